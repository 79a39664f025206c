"""Metrics that update without reading a value on the host.

torchmetrics' classification metrics drop ignored targets with a boolean mask and count classes
with `torch.bincount`, and check their inputs with `torch.unique` (validate_args): each needs
the values on the host, which stalls a GPU once per update. These keep static shapes: sums
and a confusion matrix filled with `index_add_`. Each equals its torchmetrics counterpart
(tests/test_host_syncs.py).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


class TokenAccuracy(Metric):
    """Share of targets predicted right, `ignore_index` targets left out: torchmetrics'
    MulticlassAccuracy(average="micro", ignore_index=...)."""

    full_state_update = False
    correct: torch.Tensor
    total: torch.Tensor

    def __init__(self, ignore_index: int | None = None) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        hits = preds == target
        if self.ignore_index is None:
            self.correct += hits.sum()
            self.total += target.numel()
            return
        valid = target != self.ignore_index
        self.correct += (hits & valid).sum()
        self.total += valid.sum()

    def compute(self) -> torch.Tensor:
        return self.correct.float() / self.total.clamp(min=1)


class MacroF1(Metric):
    """Macro-averaged F1 over `num_classes`, from a confusion matrix: torchmetrics'
    MulticlassF1Score(num_classes, average="macro") (classes never predicted nor present
    are left out of the mean, as there)."""

    full_state_update = False
    confusion: torch.Tensor

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state("confusion", torch.zeros(num_classes * num_classes, dtype=torch.long), "sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        cells = target.flatten().long() * self.num_classes + preds.flatten().long()
        self.confusion.index_add_(0, cells, torch.ones_like(cells))

    def compute(self) -> torch.Tensor:
        confusion = self.confusion.view(self.num_classes, self.num_classes)  # (target, pred)
        tp = confusion.diag().float()
        fp = confusion.sum(0) - tp
        fn = confusion.sum(1) - tp
        denominator = 2 * tp + fp + fn
        f1 = torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), 0.0)
        seen = (denominator > 0).float()
        return (f1 * seen).sum() / seen.sum().clamp(min=1)


class PerplexityFromLoss(Metric):
    """exp of the token-weighted mean cross-entropy, from the loss a step computed anyway
    (torchmetrics' Perplexity re-runs a softmax over the logits, in float32)."""

    full_state_update = False
    nll: torch.Tensor
    count: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("nll", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, mean_loss: torch.Tensor, count: torch.Tensor | int) -> None:
        """`mean_loss`: cross-entropy averaged over `count` tokens (NaN when there are none)."""
        count = torch.as_tensor(count, device=self.count.device)
        self.nll += torch.where(count > 0, mean_loss.detach().float() * count, 0.0)
        self.count += count

    def compute(self) -> torch.Tensor:
        return torch.exp(self.nll / self.count)


class MeanLoss(Metric):
    """The batch-weighted mean of a loss over an epoch: torchmetrics' MeanMetric(weights) without
    its NaN check, which reads the value on the host at every update."""

    full_state_update = False
    total: torch.Tensor
    count: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, mean_loss: torch.Tensor, weight: int) -> None:
        """`mean_loss`: a loss averaged over `weight` examples."""
        self.total += mean_loss.detach().float() * weight
        self.count += weight

    def compute(self) -> torch.Tensor:
        return self.total / self.count
