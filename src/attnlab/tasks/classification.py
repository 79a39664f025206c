"""Sequence classification: cross-entropy on pooled logits, accuracy and macro F1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from attnlab.data.spec import DataSpec
from attnlab.protocols import Classifier
from attnlab.tasks.base import Task


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
        classes = self.spec.num_classes
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(classes, average="micro"),
                "f1": MulticlassF1Score(classes, average="macro"),
            },
            prefix=f"{stage}/",
        )

    def step(self, network: Classifier, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits = network.classify(batch["input_ids"], batch["padding_mask"])  # (B, C)
        loss = F.cross_entropy(logits, batch["labels"])
        self.metrics(stage).update(logits.argmax(-1), batch["labels"])
        return loss

    def count_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int((~batch["padding_mask"]).sum())
