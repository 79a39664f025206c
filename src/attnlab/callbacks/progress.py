"""Progress that reads the metrics it shows only at logging steps: a rich bar in a terminal,
a plain line at a steady interval where output goes to a file (`> log`, a SLURM log)."""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.trainer.states import RunningStage

from attnlab.module import is_logging_step
from attnlab.utils import lightning_compat as compat

log = logging.getLogger(__name__)

# Training metrics the bar shows, which the module logs without `prog_bar` (Lightning would
# read them on the host after every batch, logged or not).
SHOWN = ("train/loss",)


@compat.replace_train_description
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

    def train_description(self, current_epoch: int) -> str:
        # Lightning writes "Epoch 0/-2" for max_epochs=-1 (a run limited by max_steps).
        description = f"Epoch {current_epoch}"
        max_epochs = self.trainer.max_epochs
        if max_epochs is not None and max_epochs > 0:
            description += f"/{max_epochs - 1}"
        # as wide as "Validation": the bar does not flicker between the two
        return f"{description:{len(self.validation_description)}}"


class PlainProgress(pl.Callback):
    """One line every `interval_s` seconds while training, when stdout is not a terminal
    (where the rich bar shows nothing useful): step, loss, tokens/s, ETA.

        step 1200/5000 (24%)  loss 1.8123  41.2k tokens/s  elapsed 0:04:10  ETA 0:13:12

    The line is printed at the first logging step once the interval has passed, since only
    those steps read values on the host. `interval_s` null or 0 prints at every logging step;
    `on_terminal: true` prints in a terminal too."""

    def __init__(self, interval_s: float | None = 30.0, on_terminal: bool = False) -> None:
        self.interval_s = interval_s or 0.0
        self.on_terminal = on_terminal
        self.active = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        terminal = sys.stdout.isatty()
        self.active = trainer.is_global_zero and (self.on_terminal or not terminal)
        self._start = self._last = time.monotonic()
        self._start_step = trainer.global_step
        self._start_tokens = getattr(pl_module, "tokens_seen", 0)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if not self.active or not is_logging_step(trainer, batch_idx):
            return
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        log.info(self.line(trainer, pl_module, now))

    def line(self, trainer: pl.Trainer, pl_module: pl.LightningModule, now: float) -> str:
        step, total = trainer.global_step, trainer.estimated_stepping_batches
        elapsed = now - self._start
        parts = [f"step {step}/{total} ({step / total:.0%})" if math.isfinite(total) else ""]
        if not parts[0]:
            parts[0] = f"step {step}"
        loss = trainer.callback_metrics.get("train/loss")
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            parts.append(f"loss {loss.item():.4f}")  # a logging step: read anyway
        tokens = getattr(pl_module, "tokens_seen", None)
        if tokens is not None and elapsed > 0:
            parts.append(f"{_count((tokens - self._start_tokens) / elapsed)} tokens/s")
        parts.append(f"elapsed {_duration(elapsed)}")
        done = step - self._start_step
        if done > 0 and math.isfinite(total):
            parts.append(f"ETA {_duration((total - step) * elapsed / done)}")
        return "  ".join(parts)


def _count(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
