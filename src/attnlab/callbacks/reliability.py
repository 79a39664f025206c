"""Never lose work: RNG state in checkpoints, a checkpoint on SIGTERM, a guard against NaN loss."""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torchmetrics import Metric

from attnlab.checkpoint_io import AsyncAtomicCheckpointIO, AtomicCheckpointIO
from attnlab.csv_logger import RunCSVLogger
from attnlab.utils import lightning_compat as compat

log = logging.getLogger(__name__)


def save_last_checkpoint(trainer: pl.Trainer) -> Path | None:
    """Write `<checkpoint dir>/last.ckpt` now; None when checkpointing is off."""
    callback = trainer.checkpoint_callback
    if not isinstance(callback, ModelCheckpoint) or callback.dirpath is None:
        log.warning("No ModelCheckpoint with a directory: nothing saved.")
        return None
    if callback.save_last:
        # ModelCheckpoint's own naming: this run's last.ckpt, or last-v1.ckpt beside another
        # run's in a reused directory (a failed run never overwrites an earlier run's files).
        compat.save_last(callback, trainer, compat.monitor_candidates(callback, trainer))
        return Path(callback.last_model_path)
    path = Path(callback.dirpath) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}.ckpt"
    trainer.save_checkpoint(path)
    return path


def _epoch_finished(trainer: pl.Trainer) -> bool:
    """True from the end of an epoch's last batch until the next epoch starts."""
    progress = trainer.fit_loop.epoch_loop.batch_progress
    return progress.is_last_batch and progress.current.completed == progress.current.ready


def _pending_log_rows(trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[dict[str, float]]:
    """The rows Lightning logs for the current step after a checkpoint written now: the step's
    own row (a save in `on_train_batch_end`), or the epoch's training metrics (a save at the
    epoch's end, after its validation). Each with its `epoch` and `step`, as loggers get them."""
    progress = trainer.fit_loop.epoch_loop.batch_progress
    if progress.current.completed < progress.current.processed:  # inside on_train_batch_end
        values = compat.pending_step_metrics(trainer)
    elif _epoch_finished(trainer):
        task = getattr(pl_module, "task", None)  # what module.py logs with on_epoch=True
        metrics = task.metrics("train") if task is not None else {}
        # Lightning resets them once logged: a save after that (on_train_end) has none pending.
        values = {
            key: float(metric.compute())
            for key, metric in metrics.items()
            if compat.metric_update_count(metric) > 0
        }
    else:
        return []
    if not values:
        return []
    # Both are logged at the step just taken: global_step counts it already.
    return [{"epoch": trainer.current_epoch, **values, "step": trainer.global_step - 1}]


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, list):  # a torchmetrics "cat" state
        return [_to_device(v, device) for v in value]
    return value


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose decisions depend only on what a checkpoint restores, so a run
    killed at any point and resumed writes the same best.ckpt as an uninterrupted run.

    Lightning's ModelCheckpoint, with `every_n_train_steps`, ranks the model at each periodic
    save by the last `val/loss` it finds in `trainer.callback_metrics`. That value is stale
    (it belongs to earlier weights) and is not in checkpoints: an uninterrupted run saves the
    weights of the first periodic step after each validation as best.ckpt, a resumed run (no
    metric until its first validation) skips those saves. And a periodic save on the last
    batch of an epoch resumes past that epoch's validation (Lightning restarts at the next
    epoch), so that validation is never ranked. Here instead:

    - the best model is chosen only after a validation (or at the epoch end, where Lightning's
      ModelCheckpoint would do it: `_should_save_on_train_epoch_end`), by that fresh metric,
      with the weights just validated; last.ckpt is written with it;
    - periodic saves (`every_n_train_steps`, `train_time_interval`) write last.ckpt only, and
      none on a batch that a validation or the epoch end follows (their save covers that step).
    - when a validation's weights become best.ckpt, last.ckpt is a hard link to it (the same
      contents: no second write), renamed into place (checkpoint_io.link_checkpoint). Every
      save renames a new file over its name, so a later best.ckpt never changes a last.ckpt
      that was linked to the old one.

    The state key is ModelCheckpoint's, so checkpoints of either class resume with the other.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._due_at_epoch_end = False  # a periodic save put off to the epoch end
        self._written: str | None = None  # the file the last save wrote

    @property
    def state_key(self) -> str:
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def _periodic_save_due(self, trainer: pl.Trainer) -> bool:
        n = compat.every_n_train_steps(self)
        if n >= 1 and trainer.global_step % n == 0:
            return True
        interval = compat.train_time_interval(self)
        if interval is None:
            return False
        now = time.monotonic()
        last = compat.last_time_checked(self)
        due = last is not None and now - last >= interval.total_seconds()
        # ranks may disagree on the time: rank 0 decides
        due = trainer.strategy.broadcast(due)
        if due:
            compat.set_last_time_checked(self, now)
        return due

    def _validation_follows(self, trainer: pl.Trainer) -> bool:
        epoch_loop = trainer.fit_loop.epoch_loop
        if epoch_loop.batch_progress.is_last_batch:
            return True  # the epoch end (and its validation, if any) comes next
        return compat.validation_follows_batch(trainer)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if compat.skips_saving(self, trainer) or not self._periodic_save_due(trainer):
            return
        if self._validation_follows(trainer):
            self._due_at_epoch_end = True
            return
        compat.save_last(self, trainer, compat.monitor_candidates(self, trainer))

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        self._written = filepath

    def _links_last(self, trainer: pl.Trainer) -> bool:
        """Whether last.ckpt can be a link to a best.ckpt written in the same step: one local
        file (not a sharded checkpoint's folder) written by attnlab's checkpoint IO."""
        io = trainer.strategy.checkpoint_io
        return (
            self.save_last is True
            and self.dirpath is not None
            and "://" not in str(self.dirpath)
            and isinstance(io, AtomicCheckpointIO | AsyncAtomicCheckpointIO)
        )

    def _save_ranked(self, trainer: pl.Trainer, rank: bool) -> None:
        candidates = compat.monitor_candidates(self, trainer)
        self._due_at_epoch_end = False
        if not rank:
            compat.save_last(self, trainer, candidates)
            return
        link = self._links_last(trainer)
        if link:  # best.ckpt's state names last.ckpt as last.ckpt's own does: equal contents
            last = compat.last_checkpoint_path(self, trainer, candidates)
            previous, self.last_model_path = self.last_model_path, last
        self._written = None
        compat.save_top_k(self, trainer, candidates)
        best = self._written
        if link and best is not None and trainer.strategy.broadcast(not os.path.isdir(best)):
            if trainer.is_global_zero:
                trainer.strategy.checkpoint_io.link_checkpoint(best, last)
            trainer.strategy.barrier("RunCheckpoint.link")
            compat.remove_replaced(self, trainer, previous, last)
            return
        if link:  # not the best: last.ckpt is written in full, named as ModelCheckpoint does
            self.last_model_path = previous
        compat.save_last(self, trainer, candidates)

    def _epoch_due(self, trainer: pl.Trainer) -> bool:
        # Lightning turns every_n_epochs off when a step or time trigger is set; validations
        # are still ranked, every epoch.
        n = compat.every_n_epochs(self) or 1
        return (trainer.current_epoch + 1) % n == 0

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if compat.skips_saving(self, trainer) or compat.saves_on_train_epoch_end(self, trainer):
            return
        self._save_ranked(trainer, rank=self._epoch_due(trainer))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if compat.skips_saving(self, trainer):
            return
        if compat.saves_on_train_epoch_end(self, trainer):
            self._save_ranked(trainer, rank=self._epoch_due(trainer))
        elif self._due_at_epoch_end:
            self._save_ranked(trainer, rank=False)


class ResumeState(Callback):
    """Saves the global RNG states (torch, CUDA, numpy, python) in checkpoints; on SIGTERM,
    saves last.ckpt before Lightning stops the fit.

    Lightning restores steps, epochs, optimiser, schedulers and loops but no RNG state. The saved
    state is put back at `on_train_start`, not at load time: after the sanity check and the
    training loader's first `iter()` (a plain DataLoader draws its base seed then), before the
    first resumed batch is fetched (a collate that masks, as MLM's does, draws from it).
    Lightning itself only sets `trainer.received_sigterm` and raises SIGTERMException (a
    SystemExit) after the current batch; it saves nothing unless SLURM auto-requeue is on.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self._metrics: dict[str, float] = {}
        self._metric_states: dict[str, dict[str, Any]] = {}

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = compat.collect_rng_states(include_cuda=torch.cuda.is_available())
        # numpy's state holds an ndarray, which torch.load(weights_only=True) refuses: store lists.
        name, keys, *rest = states["numpy"]
        states["numpy"] = [name, keys.tolist(), *rest]
        checkpoint["rng_states"] = states
        # Neither is in Lightning's checkpoints, and both end up in metrics.json: the last logged
        # values (a run resumed at its last step logs nothing new) and the torchmetrics
        # accumulated so far this epoch (train/acc of a resumed epoch would cover only its end).
        checkpoint["callback_metrics"] = {
            key: float(value)
            for key, value in trainer.callback_metrics.items()
            if isinstance(value, torch.Tensor) and value.numel() == 1
        }
        # Rows Lightning logs for this step after the checkpoint is written: a resumed run
        # starts at the next step and would never write them (csv_logger.py).
        checkpoint["pending_log_rows"] = _pending_log_rows(trainer, pl_module)
        for logger in trainer.loggers:
            if isinstance(logger, RunCSVLogger):
                logger.save()  # rows logged without a save (LearningRateMonitor's) reach disk
        if _epoch_finished(trainer):  # the resumed run starts the next epoch afresh
            checkpoint["metric_states"] = {}
            return
        checkpoint["metric_states"] = {
            name: {**module.metric_state, "_update_count": compat.metric_update_count(module)}
            for name, module in pl_module.named_modules()
            if isinstance(module, Metric)
        }

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._pending = checkpoint.get("rng_states")
        pending = checkpoint.get("pending_log_rows", [])
        self._metrics = dict(checkpoint.get("callback_metrics", {}))
        for row in pending:
            self._metrics |= {k: v for k, v in row.items() if k not in ("epoch", "step")}
        if trainer.state.fn == TrainerFn.FITTING:  # not when testing a checkpoint
            for logger in trainer.loggers:
                if isinstance(logger, RunCSVLogger):
                    logger.resume_at(checkpoint["global_step"], pending)
        # Each rank accumulates its own share; the checkpoint holds rank 0's only.
        self._metric_states = checkpoint.get("metric_states", {}) if trainer.world_size == 1 else {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # configure_optimizers asks for trainer.estimated_stepping_batches, which builds the
        # training loader before the checkpoint is restored; Lightning then skips loading the
        # loader's saved position (fit_loop.setup_data returns early). Load it here, before the
        # first batch is drawn (ResumableDataLoader applies it lazily).
        compat.load_pending_loader_states(trainer)
        self._restore_metrics(trainer)  # after the sanity check, which resets them
        if self._pending is not None:
            name, keys, *rest = self._pending["numpy"]
            numpy_state = (name, np.asarray(keys, np.uint32), *rest)
            compat.set_rng_states({**self._pending, "numpy": numpy_state})
            self._pending = None
        modules = dict(pl_module.named_modules())
        for name, state in self._metric_states.items():
            module = modules.get(name)
            if isinstance(module, Metric):
                device = module.device
                for attr, value in state.items():
                    if attr != "_update_count":
                        setattr(module, attr, _to_device(value, device))
                compat.restore_metric_update_count(module, state.get("_update_count", 0))
        self._metric_states = {}

    def _restore_metrics(self, trainer: pl.Trainer) -> None:
        for key, value in self._metrics.items():
            compat.restore_callback_metric(trainer, key, value)
        self._metrics = {}

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A fit resumed at its last step skips on_train_start: it still ends with those values.
        self._restore_metrics(trainer)

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
