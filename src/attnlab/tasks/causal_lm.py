"""Causal language modelling: next-token cross-entropy and perplexity."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection

from attnlab.data.spec import DataSpec
from attnlab.protocols import CausalLM
from attnlab.tasks.base import Task
from attnlab.tasks.metrics import PerplexityFromLoss

IGNORE_INDEX = -100  # labels at padding positions, if the data has any


class CausalLMTask(Task):
    """Batches hold `input_ids` (B, T) and `labels` (B, T), the inputs shifted by one.

    Training computes the loss alone, so the step costs what a hand-written loop costs;
    validation and test add perplexity, the exponential of the loss averaged over tokens.
    """

    name = "causal_lm"
    metric_names = {"val": ("ppl",), "test": ("ppl",)}
    network_protocol = CausalLM

    def __init__(self, spec: DataSpec) -> None:
        super().__init__(spec)

    def make_metrics(self, stage: str) -> MetricCollection:
        metrics = {} if stage == "train" else {"ppl": PerplexityFromLoss()}
        return MetricCollection(metrics, prefix=f"{stage}/")

    def step(self, network: CausalLM, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        document_ids = batch.get("document_ids")  # packed documents (data.document_mask)
        if document_ids is None:
            logits = network(batch["input_ids"])  # (B, T, V)
        else:
            logits = network(batch["input_ids"], document_ids=document_ids)
        labels = batch["labels"]  # (B, T)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
        if stage != "train":
            self.metrics(stage)["ppl"].update(loss, (labels != IGNORE_INDEX).sum())
        return loss

    def count_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | int:
        return batch["input_ids"].numel()
