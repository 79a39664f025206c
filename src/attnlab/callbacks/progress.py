"""Progress that reads the metrics it shows only at logging steps: a rich bar in a terminal,
plain lines where output goes to a file (`> log`, a SLURM log): the first step, a line at a
steady interval, and one per validation with its metrics."""

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

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if not sys.stdout.isatty():  # a file gets no frames (rich prints the last at the end)
            self.disable()

    @property
    def total_train_batches(self) -> int | float:
        """The epoch's batches, or fewer where trainer.max_steps ends the run in this epoch
        (Lightning's counts them only when max_epochs is -1): the bar's total and its ETA."""
        total, trainer = super().total_train_batches, self.trainer
        if trainer.max_steps is not None and trainer.max_steps > 0:
            steps_left = trainer.max_steps - trainer.global_step
            total = min(total, steps_left * trainer.accumulate_grad_batches)
        return total

    def train_description(self, current_epoch: int) -> str:
        # Lightning writes "Epoch 0/-2" for max_epochs=-1 (a run limited by max_steps), and
        # "Epoch 0/9" where max_steps ends the run long before the 10th epoch.
        description = f"Epoch {current_epoch}"
        max_epochs, max_steps = self.trainer.max_epochs, self.trainer.max_steps or -1
        if max_epochs is not None and max_epochs > 0 and max_steps < 0:
            description += f"/{max_epochs - 1}"
        # as wide as "Validation": the bar does not flicker between the two
        return f"{description:{len(self.validation_description)}}"


class PlainProgress(pl.Callback):
    """Where stdout is not a terminal (the rich bar draws nothing there): a line when the
    first step is done, one every `interval_s` seconds while training (step, loss, tokens/s,
    ETA to the step that ends the run), and one per validation with its metrics.

        first training batch done 12.3 s after fit began
        step 1200/5000 (24%)  loss 1.8123  41.2k tokens/s  elapsed 0:04:10  ETA 0:13:12
        validation at step 1200: val/loss 1.9012  val/ppl 6.6934

    The interval line is printed at the first logging step once the interval has passed,
    since only those steps read values on the host. `interval_s` null or 0 prints at every
    logging step; `on_terminal: true` prints in a terminal too."""

    def __init__(self, interval_s: float | None = 30.0, on_terminal: bool = False) -> None:
        self.interval_s = interval_s or 0.0
        self.on_terminal = on_terminal
        self.active = False
        self._fit_start = time.monotonic()
        self._first_step_seen = False

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = time.monotonic()  # data setup and the sanity check count

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        terminal = sys.stdout.isatty()
        self.active = trainer.is_global_zero and (self.on_terminal or not terminal)
        self._start = self._last = time.monotonic()
        self._start_step = trainer.global_step
        self._start_tokens = getattr(pl_module, "tokens_seen", 0)
        self._first_step_seen = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active or trainer.sanity_checking:
            return
        shown = [
            f"{name} {float(value):.4f}"
            for name, value in sorted(trainer.callback_metrics.items())
            if name.startswith("val/") and isinstance(value, torch.Tensor) and value.numel() == 1
        ]
        _say(f"validation at step {trainer.global_step}: {'  '.join(shown) or 'no metrics'}")

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if not self.active:
            return
        now = time.monotonic()
        if not self._first_step_seen:  # how long a user waits before training shows
            self._first_step_seen = True
            took = now - self._fit_start
            _say(f"first training batch done {took:.1f} s after fit began")
        if not is_logging_step(trainer, batch_idx) or now - self._last < self.interval_s:
            return
        self._last = now
        _say(self.line(trainer, pl_module, now))

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


def _say(line: str) -> None:
    """Logged where logging goes somewhere (attnlab-train: the console and the run's log
    file), else printed (the Python API in a notebook configures no logging)."""
    if log.hasHandlers():
        log.info(line)
    else:
        print(line, flush=True)


def _count(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
