"""Masked language modelling: cross-entropy on the masked positions, accuracy and perplexity."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.text import Perplexity

from attnlab.data.spec import DataSpec
from attnlab.protocols import MaskedLM
from attnlab.tasks.base import Task

IGNORE_INDEX = -100  # labels of positions that were not selected for masking


class MaskedLMTask(Task):
    """Batches hold `input_ids` (B, T) already masked, `labels` (B, T) with the original ids at
    the selected positions and -100 elsewhere, and `padding_mask` (B, T), True at padding.
    The data does the (dynamic) masking, so the task only scores. The network provides
    `encode` and `mlm_logits` (see EncoderOnly).
    """

    name = "masked_lm"
    metric_names = {"train": ("acc",), "val": ("acc", "ppl"), "test": ("acc", "ppl")}
    network_protocol = MaskedLM

    def __init__(self, spec: DataSpec) -> None:
        super().__init__(spec)

    def make_metrics(self, stage: str) -> MetricCollection:
        metrics: dict[str, nn.Module] = {
            "acc": MulticlassAccuracy(
                self.spec.vocab_size, average="micro", ignore_index=IGNORE_INDEX
            )
        }
        if stage != "train":
            metrics["ppl"] = Perplexity(ignore_index=IGNORE_INDEX)
        return MetricCollection(metrics, prefix=f"{stage}/", compute_groups=False)

    def step(self, network: MaskedLM, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        hidden = network.encode(
            batch["input_ids"], batch["padding_mask"], batch.get("token_type_ids")
        )  # (B, T, D)
        labels = batch["labels"]  # (B, T)
        selected = labels != IGNORE_INDEX  # (B, T)
        # The vocabulary projection only where it is scored: ~15% of positions, and the
        # projection dominates the cost of a small model's step.
        logits = network.mlm_logits(hidden[selected])  # (N, V)
        targets = labels[selected]  # (N,)
        loss = F.cross_entropy(logits, targets)
        metrics = self.metrics(stage)
        metrics["acc"].update(logits.argmax(-1), targets)
        if stage != "train":
            metrics["ppl"].update(logits.float()[None], targets[None])
        return loss

    def count_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int((~batch["padding_mask"]).sum())
