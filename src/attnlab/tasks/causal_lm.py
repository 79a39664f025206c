"""Causal language modelling: next-token cross-entropy and perplexity."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection

from attnlab.data.spec import DataSpec
from attnlab.protocols import CausalLM, LMReadout
from attnlab.tasks.base import Task
from attnlab.tasks.lm_loss import ReadoutLoss, check_loss_impl
from attnlab.tasks.metrics import PerplexityFromLoss

IGNORE_INDEX = -100  # labels at padding positions, if the data has any


class CausalLMTask(Task):
    """Batches hold `input_ids` (B, T) and `labels` (B, T), the inputs shifted by one.

    Training computes the loss alone, so the step costs what a hand-written loop costs;
    validation and test add perplexity, the exponential of the loss averaged over tokens.

    loss_impl (tasks/lm_loss.py): "dense" (logits, then cross-entropy), "chunked" (from the
    hidden states and the head's weight, no (B, T, V) logits), or "liger" (Liger-Kernel's
    fused kernel, CUDA). label_smoothing: as F.cross_entropy's, in every stage (perplexity
    is then that of the smoothed loss). loss_chunk_tokens: tokens per chunk (null: auto).
    """

    name = "causal_lm"
    metric_names = {"val": ("ppl",), "test": ("ppl",)}
    network_protocol = CausalLM

    def __init__(
        self,
        spec: DataSpec,
        loss_impl: str = "dense",
        label_smoothing: float = 0.0,
        loss_chunk_tokens: int | None = None,
    ) -> None:
        check_loss_impl(loss_impl, label_smoothing)
        super().__init__(spec)
        self.loss_impl, self.label_smoothing = loss_impl, label_smoothing
        self.readout_loss = ReadoutLoss(loss_impl, label_smoothing, loss_chunk_tokens)

    @classmethod
    def check_arguments(cls, values: dict[str, Any]) -> None:
        """The settings' checks, run on the config before any work (run/value_checks.py)."""
        check_loss_impl(values.get("loss_impl", "dense"), values.get("label_smoothing", 0.0))

    def check_network(self, network: nn.Module) -> None:
        super().check_network(network)
        if self.loss_impl != "dense" and not isinstance(network, LMReadout):
            raise TypeError(
                f"task.loss_impl={self.loss_impl} needs an LMReadout network (attnlab/"
                f"protocols.py); {type(network).__name__} is not one: use task.loss_impl=dense"
            )

    def make_metrics(self, stage: str) -> MetricCollection:
        metrics = {} if stage == "train" else {"ppl": PerplexityFromLoss()}
        return MetricCollection(metrics, prefix=f"{stage}/")

    def step(self, network: CausalLM, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        document_ids = batch.get("document_ids")  # packed documents (data.document_mask)
        extra = {} if document_ids is None else {"document_ids": document_ids}
        labels = batch["labels"]  # (B, T)
        if self.loss_impl == "dense":
            logits = network(batch["input_ids"], **extra)  # (B, T, V)
            loss = F.cross_entropy(
                logits.flatten(0, 1),
                labels.flatten(),
                ignore_index=IGNORE_INDEX,
                label_smoothing=self.label_smoothing,
            )
        else:  # no logits: the loss reads the head's weight (tasks/lm_loss.py)
            hidden = network.hidden_states(batch["input_ids"], **extra)  # (B, T, D)
            loss = self.readout_loss(network.lm_readout(), hidden, labels)
        if stage != "train":
            self.metrics(stage)["ppl"].update(loss, (labels != IGNORE_INDEX).sum())
        return loss

    def count_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | int:
        return batch["input_ids"].numel()
