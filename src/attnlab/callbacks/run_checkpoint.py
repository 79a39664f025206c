"""best.ckpt and last.ckpt whose choice depends only on what a checkpoint restores
(`RunCheckpoint`), and `save_last_checkpoint` for SIGTERM and NanGuard."""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

from attnlab.data.loading.atomic import remove_orphans
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


@runtime_checkable
class LinksCheckpoints(Protocol):
    """A checkpoint IO that can give a written file a second name without writing it again
    (attnlab's, run/checkpoint_io.py: the run layer, above the callbacks)."""

    def link_checkpoint(self, source: str | Path, target: str | Path) -> None: ...


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose decisions depend only on what a checkpoint restores, so a run
    killed at any point and resumed writes the same best.ckpt as an uninterrupted run.

    Lightning's, with `every_n_train_steps`, ranks each periodic save by a stale `val/loss`
    that no checkpoint holds, and may save an epoch's last batch before its validation, which
    a resume then skips (docs/reliability.md, "Which checkpoint is best"). Here instead:

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

    def __init__(
        self,
        *args: Any,
        every_n_train_steps: int | None = None,
        train_time_interval: timedelta | None = None,
        every_n_epochs: int | None = None,
        enable_version_counter: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            *args,
            every_n_train_steps=every_n_train_steps,
            train_time_interval=train_time_interval,
            every_n_epochs=every_n_epochs,
            enable_version_counter=enable_version_counter,
            **kwargs,
        )
        self.versioned = enable_version_counter
        # The triggers as given (ModelCheckpoint keeps them private). Lightning turns
        # every_n_epochs off when a step or time trigger is set; validations are still ranked.
        self.periodic_steps = every_n_train_steps or 0
        self.periodic_interval = train_time_interval
        self.rank_every_n_epochs = every_n_epochs or 1
        self._time_checked: float | None = None  # when the time trigger last fired
        self._due_at_epoch_end = False  # a periodic save put off to the epoch end
        self._saves = 0  # checkpoints written by trainer.save_checkpoint, counted at on_save

    @property
    def state_key(self) -> str:
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        folder = Path(self.dirpath) if self.dirpath and "://" not in str(self.dirpath) else None
        if stage == "fit" and trainer.is_global_zero and folder is not None and folder.is_dir():
            for tmp in remove_orphans(folder):  # saves a killed run never finished
                log.info("Removed %s, a save that was killed before it finished", tmp.name)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A run folder moved or copied (and resumed there) keeps its best score and files:
        Lightning reloads neither from another dirpath, and then writes best-v1.ckpt and
        last-v1.ckpt beside the old ones. The paths are this folder's, under its new name."""
        old, new = state_dict.get("dirpath"), self.dirpath
        if old and new and old != new and "://" not in f"{old}{new}":
            state_dict = {**state_dict, "dirpath": new}
            for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
                state_dict[key] = _moved(state_dict.get(key), old, new)
            models = state_dict.get("best_k_models") or {}
            state_dict["best_k_models"] = {_moved(p, old, new): s for p, s in models.items()}
        super().load_state_dict(state_dict)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._time_checked = time.monotonic()

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._saves += 1  # any save; _save_ranked tells whether save_top_k wrote one

    def _periodic_save_due(self, trainer: pl.Trainer) -> bool:
        n = self.periodic_steps
        if n >= 1 and trainer.global_step % n == 0:
            return True
        if self.periodic_interval is None:
            return False
        now = time.monotonic()
        last = self._time_checked
        due = last is not None and now - last >= self.periodic_interval.total_seconds()
        # ranks may disagree on the time: rank 0 decides
        due = trainer.strategy.broadcast(due)
        if due:
            self._time_checked = now
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

    def _links_last(self, trainer: pl.Trainer) -> bool:
        """Whether last.ckpt can be a link to a best.ckpt written in the same step: one local
        file (not a sharded checkpoint's folder) written by attnlab's checkpoint IO."""
        io = trainer.strategy.checkpoint_io
        return (
            self.save_last is True
            and self.dirpath is not None
            and "://" not in str(self.dirpath)
            and isinstance(io, LinksCheckpoints)
        )

    def _save_ranked(self, trainer: pl.Trainer, rank: bool) -> None:
        candidates = compat.monitor_candidates(self, trainer)
        self._due_at_epoch_end = False
        if not rank:
            compat.save_last(self, trainer, candidates)
            return
        link = self._links_last(trainer)
        if link:  # best.ckpt's state names last.ckpt as last.ckpt's own does: equal contents
            last = self._last_path(trainer, candidates)
            previous, self.last_model_path = self.last_model_path, last
        before, saves = dict(self.best_k_models), self._saves
        compat.save_top_k(self, trainer, candidates)
        best = self._written_by_top_k(before) if self._saves > saves else None
        if link and best is not None and trainer.strategy.broadcast(not os.path.isdir(best)):
            if trainer.is_global_zero:
                trainer.strategy.checkpoint_io.link_checkpoint(best, last)
            trainer.strategy.barrier("RunCheckpoint.link")
            compat.remove_replaced(self, trainer, previous, last)
            return
        if link:  # not the best: last.ckpt is written in full, named as ModelCheckpoint does
            self.last_model_path = previous
        compat.save_last(self, trainer, candidates)

    def _last_path(self, trainer: pl.Trainer, candidates: dict[str, Any]) -> str:
        """Where ModelCheckpoint would write last.ckpt now (last-v1.ckpt beside another run's
        last.ckpt, when versioned)."""
        path = self.format_checkpoint_name(candidates, self.CHECKPOINT_NAME_LAST)
        version = self.STARTING_VERSION
        while self.versioned and self.file_exists(path, trainer) and path != self.last_model_path:
            path = self.format_checkpoint_name(candidates, self.CHECKPOINT_NAME_LAST, ver=version)
            version += 1
        return path

    def _written_by_top_k(self, before: dict[str, Any]) -> str:
        """The file save_top_k just wrote: the entry of best_k_models it added or re-scored
        (with save_top_k > 1 not always best_model_path), else best_model_path (no monitor)."""
        changed = [p for p, score in self.best_k_models.items() if before.get(p) is not score]
        return changed[0] if changed else self.best_model_path

    def _epoch_due(self, trainer: pl.Trainer) -> bool:
        return (trainer.current_epoch + 1) % self.rank_every_n_epochs == 0

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


def _moved(path: Any, old: str, new: str) -> Any:
    """`path` under `old` as the same file under `new` (other values as they are)."""
    if isinstance(path, str) and path and Path(path).parent == Path(old):
        return str(Path(new) / Path(path).name)
    return path
