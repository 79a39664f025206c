"""Validate at the last training step of a run that has not validated yet.

`attnlab-train trainer.max_steps=20` with a validation once per epoch (or every 500 steps)
would end without one: no optimized_metric for a sweeper, no best checkpoint to test. The fit
loop is asked to validate after the last batch, the same way as at a val_check_interval, so
ModelCheckpoint keeps its best checkpoint as usual. A run that validated already, or whose
last step validates anyway, gets no extra validation.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from attnlab.utils import lightning_compat as compat


class FinalValidation(pl.Callback):
    def __init__(self) -> None:
        self.validated = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A resumed run validated before it was stopped if it kept a best checkpoint.
        checkpoint = trainer.checkpoint_callback
        self.validated = bool(getattr(checkpoint, "best_model_path", ""))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.validated = True

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self.validated or not _is_last_step(trainer) or not trainer.enable_validation:
            return
        if not compat.validation_follows_batch(trainer):
            compat.validate_after_this_batch(trainer)


def _is_last_step(trainer: pl.Trainer) -> bool:
    """The batch whose optimiser step ends the fit: max_steps reached, or the last batch of
    the last epoch."""
    if trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step:
        return True
    last_epoch = trainer.max_epochs not in (None, -1) and trainer.current_epoch + 1 >= (
        trainer.max_epochs
    )
    return last_epoch and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
