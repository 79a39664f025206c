"""Never lose work: RNG state in checkpoints, a checkpoint on SIGTERM, a guard against NaN loss."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.seed import _collect_rng_states, _set_rng_states
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


def save_last_checkpoint(trainer: pl.Trainer) -> Path | None:
    """Write `<checkpoint dir>/last.ckpt` now; None when checkpointing is off."""
    callback = trainer.checkpoint_callback
    if not isinstance(callback, ModelCheckpoint) or callback.dirpath is None:
        log.warning("No ModelCheckpoint with a directory: nothing saved.")
        return None
    path = Path(callback.dirpath) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}.ckpt"
    trainer.save_checkpoint(path)
    return path


class ResumeState(Callback):
    """Saves the global RNG states (torch, CUDA, numpy, python) in checkpoints; on SIGTERM,
    saves last.ckpt before Lightning stops the fit.

    Lightning restores steps, epochs, optimiser, schedulers and loops but no RNG state. The saved
    state is put back just before the first training batch of the resumed fit, not at load time:
    the sanity check and dataloader set-up in between would otherwise draw from it.
    Lightning itself only sets `trainer.received_sigterm` and raises SIGTERMException (a
    SystemExit) after the current batch; it saves nothing unless SLURM auto-requeue is on.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = _collect_rng_states(include_cuda=torch.cuda.is_available())
        # numpy's state holds an ndarray, which torch.load(weights_only=True) refuses: store lists.
        name, keys, *rest = states["numpy"]
        states["numpy"] = [name, keys.tolist(), *rest]
        checkpoint["rng_states"] = states

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._pending = checkpoint.get("rng_states")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # configure_optimizers asks for trainer.estimated_stepping_batches, which builds the
        # training loader before the checkpoint is restored; Lightning then skips loading the
        # loader's saved position (fit_loop.setup_data returns early). Load it here, before the
        # first batch is drawn (ResumableDataLoader applies it lazily).
        fit_loop = trainer.fit_loop
        if fit_loop._combined_loader_states_to_load:
            fit_loop._load_combined_loader_states()

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._pending is not None:
            name, keys, *rest = self._pending["numpy"]
            _set_rng_states({**self._pending, "numpy": (name, np.asarray(keys, np.uint32), *rest)})
            self._pending = None

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            path = save_last_checkpoint(trainer)
            log.warning(
                "SIGTERM: stopped at step %d (epoch %d), saved %s",
                trainer.global_step,
                trainer.current_epoch,
                path,
            )


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf."""


class NanGuard(Callback):
    """Watches the training loss; on NaN/Inf either stops (`stop`) or drops the batch (`skip`).

    stop: before the bad loss is backpropagated, saves last.ckpt (the weights after the previous
    step) and raises NonFiniteLossError naming the step and batch. The checkpoint's data
    position is past the bad batch, so resuming from it (e.g. with a lower LR) skips that batch.
    skip: the batch's gradients are discarded before the optimiser step, so the weights and
    optimiser moments stay as they were; the step counter and LR schedule still advance.
    Checked in `on_before_backward`, i.e. automatic optimisation only.
    """

    def __init__(self, policy: Literal["stop", "skip"] = "stop", max_skips: int = 100) -> None:
        if policy not in ("stop", "skip"):
            raise ValueError(f"policy={policy!r} must be 'stop' or 'skip'")
        self.policy = policy
        self.max_skips = max_skips
        self.skipped = 0
        self._bad = False

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        value = float(loss.detach())
        self._bad = not math.isfinite(value)
        if not self._bad:
            return
        batch_idx = trainer.fit_loop.epoch_loop.batch_idx
        where = f"step {trainer.global_step} (epoch {trainer.current_epoch}, batch {batch_idx})"
        if self.policy == "skip" and self.skipped < self.max_skips:
            self.skipped += 1
            log.warning("Non-finite loss %s at %s: skipping the batch", value, where)
            return
        path = save_last_checkpoint(trainer)
        raise NonFiniteLossError(
            f"loss is {value} at {where}; last good state saved to {path}"
            + (f" (skipped {self.skipped} batches before)" if self.skipped else "")
        )

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        if self._bad:  # parameters without a gradient are left alone by torch optimisers
            optimizer.zero_grad(set_to_none=True)
            self._bad = False

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = state_dict.get("skipped", 0)
