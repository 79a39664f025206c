"""Callbacks that SIGKILL their own training process at a chosen point (for resume tests), or
fill the disk (DiskFullOnSave).

`ATTNLAB_KILL_AT` names the point: `save:<file>:<step>` right after checkpoint <file> was
written (or linked to the best.ckpt of the same step) at global step <step> (e.g.
`save:best.ckpt:16`, before last.ckpt of that step),
`validation_end:<step>` after a validation computed its metrics but before any checkpoint
callback saw them, `batch_end:<step>` after a training step that wrote no checkpoint.
Added with `+callbacks.kill._target_=tests.kill_points.KillAt` (the repo root on PYTHONPATH).
`ATTNLAB_STEP_DELAY` (seconds) slows every training step from step `ATTNLAB_DELAY_FROM` on, so
that a SIGKILL sent from outside lands in the window the test aims at even on a loaded machine.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAt(pl.Callback):
    def __init__(self) -> None:
        self.point = os.environ.get("ATTNLAB_KILL_AT", "")

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        io = trainer.strategy.checkpoint_io
        save = io.save_checkpoint

        def save_then_maybe_kill(checkpoint: dict, path: Any, storage_options: Any = None) -> None:
            save(checkpoint, path, storage_options)
            if self.point == f"save:{Path(path).name}:{trainer.global_step}":
                _kill()

        io.save_checkpoint = save_then_maybe_kill
        link = getattr(io, "link_checkpoint", None)
        if link is None:
            return

        def link_then_maybe_kill(source: Any, target: Any) -> None:  # last.ckpt as best.ckpt
            link(source, target)
            if self.point == f"save:{Path(target).name}:{trainer.global_step}":
                _kill()

        io.link_checkpoint = link_then_maybe_kill

    def _at(self, hook: str, trainer: pl.Trainer) -> None:
        if self.point == f"{hook}:{trainer.global_step}":
            _kill()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._at("batch_end", trainer)
        delay = float(os.environ.get("ATTNLAB_STEP_DELAY") or 0)
        if delay and trainer.global_step >= int(os.environ.get("ATTNLAB_DELAY_FROM") or 0):
            time.sleep(delay)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning runs checkpoint callbacks after all others: nothing is saved yet.
        if not trainer.sanity_checking:
            self._at("validation_end", trainer)


class DiskFullOnSave(pl.Callback):
    """Every checkpoint write fails as on a full disk (ENOSPC), from inside torch.save."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        import errno

        from attnlab.run import checkpoint_io

        def full(*args: Any, **kwargs: Any) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        checkpoint_io.torch.save = full  # the module's torch: this process only, it dies next
