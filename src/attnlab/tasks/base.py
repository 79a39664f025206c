"""The interface every task implements."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torchmetrics import MetricCollection

from attnlab.data.spec import DataSpec
from attnlab.protocols import EstimatesFlops

STAGES = ("train", "val", "test")


class Task(nn.Module):
    """Loss and metrics of one objective.

    A task is an nn.Module so that its torchmetrics follow the LightningModule across devices
    and ranks. `step` returns the loss and updates `metrics[stage]`; the LightningModule logs
    both under `{stage}/{name}`.
    """

    name: ClassVar[str]
    # What make_metrics logs besides `{stage}/loss`, per stage: `optimized_metric` is checked
    # against these before a run starts (run/validation.py).
    metric_names: ClassVar[dict[str, tuple[str, ...]]] = {}
    # What the task needs from a network (attnlab/protocols.py); step's `network` is one.
    network_protocol: ClassVar[type]

    def __init__(self, spec: DataSpec) -> None:
        super().__init__()
        self.spec = spec
        # "train" would clash with nn.Module.train, hence the suffix.
        self.stage_metrics = nn.ModuleDict(
            {f"{stage}_metrics": self.make_metrics(stage) for stage in STAGES}
        )

    def make_metrics(self, stage: str) -> MetricCollection:
        raise NotImplementedError

    @classmethod
    def fit_metrics(cls) -> list[str]:
        """What this task logs while fitting (`train/...`, `val/...`): what checkpointing,
        early stopping and sweepers can monitor."""
        return [
            f"{stage}/{name}"
            for stage in ("train", "val")
            for name in ("loss", *cls.metric_names.get(stage, ()))
        ]

    def metrics(self, stage: str) -> MetricCollection:
        return self.stage_metrics[f"{stage}_metrics"]

    def check_network(self, network: nn.Module) -> None:
        """Refuse a network that does not offer what this task calls."""
        if not isinstance(network, self.network_protocol):
            raise TypeError(
                f"task {self.name!r} needs a {self.network_protocol.__name__} network "
                f"(attnlab/protocols.py); {type(network).__name__} is not one"
            )

    def step(self, network: Any, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        """Loss for `batch` (updating this stage's metrics); `network` is a
        `network_protocol`."""
        raise NotImplementedError

    def count_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | int:
        """Tokens the network reads in this batch (padding excluded), for throughput: a
        tensor on the batch's device where counting needs the values (read only when logged),
        else an int."""
        raise NotImplementedError

    def flops_per_token(self, network: nn.Module, seq_len: int) -> int | None:
        """Training FLOPs per token of `network` on this task at sequence length seq_len
        (None where the network does not estimate them)."""
        if not isinstance(network, EstimatesFlops):
            return None
        return int(network.flops_per_token(seq_len))
