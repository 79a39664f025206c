"""Sequence classification: cross-entropy on pooled logits, accuracy and macro F1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection

from attnlab.data.spec import DataSpec
from attnlab.protocols import Classifier
from attnlab.tasks.base import Task
from attnlab.tasks.metrics import MacroF1, TokenAccuracy


class ClassificationTask(Task):
    """Batches hold `input_ids` (B, T), `padding_mask` (B, T) (True at padding) and `labels`
    (B,). The network's `classify` pools the sequence (how depends on the architecture).
    """

    name = "classification"
    metric_names = {stage: ("acc", "f1") for stage in ("train", "val", "test")}
    network_protocol = Classifier

    def __init__(self, spec: DataSpec) -> None:
        if not spec.num_classes:
            raise ValueError("classification data must set DataSpec.num_classes")
        super().__init__(spec)

    def make_metrics(self, stage: str) -> MetricCollection:
        # Updated every step (training's too): metrics that never read a value on the host.
        return MetricCollection(
            {"acc": TokenAccuracy(), "f1": MacroF1(self.spec.num_classes)},
            prefix=f"{stage}/",
            compute_groups=False,
        )

    def step(self, network: Classifier, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits = network.classify(batch["input_ids"], batch["padding_mask"])  # (B, C)
        loss = F.cross_entropy(logits, batch["labels"])
        self.metrics(stage).update(logits.argmax(-1), batch["labels"])
        return loss

    def count_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | int:
        return (~batch["padding_mask"]).sum()
