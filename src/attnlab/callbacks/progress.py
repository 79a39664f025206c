"""A progress bar that reads the metrics it shows only at logging steps."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import RunningStage

from attnlab.module import is_logging_step

# Training metrics the bar shows, which the module logs without `prog_bar` (Lightning would
# read them on the host after every batch, logged or not).
SHOWN = ("train/loss",)


class RichProgressBar(pl.callbacks.RichProgressBar):
    """Lightning's RichProgressBar, except that while training it fetches the metrics it shows
    (`train/loss`, ...) only at logging steps (`attnlab.module.is_logging_step`), when they
    change. Lightning's fetches them after every batch, and each fetch reads every shown
    tensor on the host (`.item()`), which makes a GPU wait."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shown: dict[str, int | str | float | dict[str, float]] | None = None

    def get_metrics(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> dict[str, int | str | float | dict[str, float]]:
        training = trainer.state.stage == RunningStage.TRAINING
        batch_idx = trainer.fit_loop.epoch_loop.batch_idx
        if training and self._shown is not None and not is_logging_step(trainer, batch_idx):
            return self._shown
        metrics = super().get_metrics(trainer, pl_module)
        for name in SHOWN:
            value = trainer.callback_metrics.get(name)
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                metrics[name] = value.item()
        self._shown = metrics
        return metrics
