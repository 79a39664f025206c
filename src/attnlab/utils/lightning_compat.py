"""Every private Lightning and torchmetrics name attnlab relies on, behind named functions.

Resuming a run exactly (callbacks/run_checkpoint.py, callbacks/resume_state.py) needs state
that Lightning keeps to itself: RNG states, ModelCheckpoint's save decisions, the fit loop's
data fetcher and pending loader states, the logged metrics, a Metric's update count; the
progress bar and the module reach two more. Private names change without notice, so
they are reached only from here; tests/test_lightning_compat.py exercises each one against the
installed versions, and pyproject.toml bounds lightning and torchmetrics to the minor
versions those tests passed on. A new Lightning minor: run that test file, fix what it names
here, then raise the bound.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loops.fit_loop import _FitLoop
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from lightning.pytorch.trainer.connectors.logger_connector import _LoggerConnector
from lightning.pytorch.utilities.seed import _collect_rng_states, _set_rng_states
from torchmetrics import Metric

# RichProgressBar's method that names the training bar ("Epoch 3/9"), called at every epoch
# start; callbacks/progress.py replaces it through `replace_train_description`.
RICH_TRAIN_DESCRIPTION = "_get_train_description"

# Class -> the private attributes (methods, or attributes set in __init__) used below.
PRIVATE_NAMES: dict[type, tuple[str, ...]] = {
    ModelCheckpoint: (
        "_save_last_checkpoint",
        "_save_topk_checkpoint",
        "_should_remove_checkpoint",
        "_remove_checkpoint",
        "_monitor_candidates",
        "_should_skip_saving_checkpoint",
        "_should_save_on_train_epoch_end",
    ),
    _TrainingEpochLoop: ("_should_check_val_fx",),
    # overridden by callbacks/progress.py ("Epoch 0/-2" for a max_steps run)
    pl.callbacks.RichProgressBar: (RICH_TRAIN_DESCRIPTION,),
    # module.py: the trainer, or None before one is attached (`.trainer` raises then)
    pl.LightningModule: ("_trainer",),
    _FitLoop: (
        "_data_fetcher",
        "_combined_loader_states_to_load",
        "_load_combined_loader_states",
        "_should_accumulate",
    ),
    pl.Trainer: ("_logger_connector",),
    _LoggerConnector: ("_callback_metrics",),
    Metric: ("_update_count", "_computed"),
}


def missing_private_names() -> list[str]:
    """`Class._name` for each name above that the installed versions lack, looked up on fresh
    instances (attributes set in __init__ included)."""
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    instances = {
        ModelCheckpoint: ModelCheckpoint(),
        _TrainingEpochLoop: trainer.fit_loop.epoch_loop,
        _FitLoop: trainer.fit_loop,
        pl.Trainer: trainer,
        _LoggerConnector: trainer._logger_connector,
        Metric: _ProbeMetric(),
        pl.callbacks.RichProgressBar: pl.callbacks.RichProgressBar(),
        pl.LightningModule: pl.LightningModule(),
    }
    return [
        f"{cls.__name__}.{name}"
        for cls, names in PRIVATE_NAMES.items()
        for name in names
        if not hasattr(instances[cls], name)
    ]


class _ProbeMetric(Metric):
    def update(self) -> None:
        pass

    def compute(self) -> torch.Tensor:
        return torch.tensor(0.0)


# RNG states (lightning.fabric.utilities.seed, re-exported by lightning.pytorch).


def collect_rng_states(include_cuda: bool) -> dict[str, Any]:
    """torch, CUDA, numpy and python RNG states, as Lightning's seed utilities hold them."""
    return _collect_rng_states(include_cuda=include_cuda)


def set_rng_states(states: dict[str, Any]) -> None:
    _set_rng_states(states)


# ModelCheckpoint's decisions and saves.


def monitor_candidates(callback: ModelCheckpoint, trainer: pl.Trainer) -> dict[str, torch.Tensor]:
    """The metrics a checkpoint is ranked by (and named with), now."""
    return callback._monitor_candidates(trainer)


def save_last(
    callback: ModelCheckpoint, trainer: pl.Trainer, candidates: dict[str, torch.Tensor]
) -> None:
    """last.ckpt in ModelCheckpoint's own naming (last-v1.ckpt beside another run's)."""
    callback._save_last_checkpoint(trainer, candidates)


def remove_replaced(
    callback: ModelCheckpoint, trainer: pl.Trainer, previous: str, current: str
) -> None:
    """Delete checkpoint `previous`, replaced by `current`, where ModelCheckpoint would (in its
    own directory, not the one the run resumed from)."""
    if previous and callback._should_remove_checkpoint(trainer, previous, current):
        callback._remove_checkpoint(trainer, previous)


def save_top_k(
    callback: ModelCheckpoint, trainer: pl.Trainer, candidates: dict[str, torch.Tensor]
) -> None:
    """Rank the current weights by `candidates` and keep them if they are among the best."""
    callback._save_topk_checkpoint(trainer, candidates)


def skips_saving(callback: ModelCheckpoint, trainer: pl.Trainer) -> bool:
    """True where ModelCheckpoint saves nothing (fast_dev_run, sanity check, a step saved)."""
    return callback._should_skip_saving_checkpoint(trainer)


def saves_on_train_epoch_end(callback: ModelCheckpoint, trainer: pl.Trainer) -> bool:
    """True where ModelCheckpoint ranks at the training epoch's end (no validation runs)."""
    return callback._should_save_on_train_epoch_end(trainer)


# Progress bar and module.


def replace_train_description(cls: type[pl.callbacks.RichProgressBar]) -> type:
    """Class decorator: the bar's training description comes from its public
    `train_description(current_epoch)` method instead of Lightning's private one."""

    def private(self: Any, current_epoch: int) -> str:
        return self.train_description(current_epoch)

    setattr(cls, RICH_TRAIN_DESCRIPTION, private)
    return cls


def train_description(bar: pl.callbacks.RichProgressBar, current_epoch: int) -> str:
    """What the bar shows for epoch `current_epoch` (Lightning's call, as it makes it)."""
    return getattr(bar, RICH_TRAIN_DESCRIPTION)(current_epoch)


def attached_trainer(module: pl.LightningModule) -> pl.Trainer | None:
    """The module's trainer, or None before one is attached (`module.trainer` raises then)."""
    return module._trainer


# The fit loop and the logged metrics.


def validation_follows_batch(trainer: pl.Trainer) -> bool:
    """Whether a validation runs after the current training batch."""
    fit_loop = trainer.fit_loop
    return bool(fit_loop.epoch_loop._should_check_val_fx(fit_loop._data_fetcher))


def validate_after_this_batch(trainer: pl.Trainer) -> None:
    """Make the fit loop validate after the current training batch, as it does at a
    val_check_interval (callbacks/final_validation.py); the loop's own rule applies again
    from the next batch on."""
    epoch_loop = trainer.fit_loop.epoch_loop

    def once(data_fetcher: Any) -> bool:
        del epoch_loop._should_check_val_fx  # the class's method again
        return True

    epoch_loop._should_check_val_fx = once


def load_pending_loader_states(trainer: pl.Trainer) -> None:
    """Give the training loaders the positions a restored checkpoint holds, if Lightning has
    not yet (it skips them when the loader was built before the checkpoint was restored)."""
    fit_loop = trainer.fit_loop
    if fit_loop._combined_loader_states_to_load:
        fit_loop._load_combined_loader_states()


def pending_step_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """What Lightning will log for the current training step once its `on_train_batch_end`
    hooks are done (`update_train_step_metrics`); {} where this step logs nothing."""
    connector = trainer._logger_connector
    if trainer.fit_loop._should_accumulate():
        return {}
    if not (connector.should_update_logs or trainer.fast_dev_run):
        return {}
    return {key: float(value) for key, value in connector.metrics["log"].items()}


def restore_callback_metric(trainer: pl.Trainer, key: str, value: float) -> None:
    """Put a logged value back into `trainer.callback_metrics` unless one is logged already."""
    trainer._logger_connector._callback_metrics.setdefault(key, torch.tensor(value))


# torchmetrics.


def metric_update_count(metric: Metric) -> int:
    """How many times `update` ran since the last reset."""
    return metric._update_count


def restore_metric_update_count(metric: Metric, count: int) -> None:
    """Set the update count of a Metric whose states were just restored; its cached result is
    dropped, so `compute` reads the restored states."""
    metric._update_count = count
    metric._computed = None
