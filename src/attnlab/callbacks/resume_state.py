"""Exact resumes: RNG states, logged metrics and torchmetrics states in checkpoints, and
last.ckpt saved on SIGTERM (`ResumeState`)."""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torchmetrics import Metric

from attnlab.callbacks.run_checkpoint import save_last_checkpoint
from attnlab.csv_logger import RunCSVLogger
from attnlab.utils import lightning_compat as compat

log = logging.getLogger(__name__)


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
