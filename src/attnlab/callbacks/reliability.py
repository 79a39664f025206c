"""Never lose work: RNG state in checkpoints, a checkpoint on SIGTERM, a guard against NaN loss."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torchmetrics import Metric

from attnlab.csv_logger import RunCSVLogger
from attnlab.run.checkpoint_io import AsyncAtomicCheckpointIO, AtomicCheckpointIO
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
    """Watches the training loss; on NaN/Inf either stops (`stop`) or drops the batch (`skip`),
    without reading the loss on the host at every step (a GPU would wait for each read).

    Every step the loss is checked on the device (`torch.isfinite`) and a step with a
    non-finite loss is not taken, also on the device: its parameters, optimiser moments and
    step counts stay exactly as they were (the step counter and LR schedule still advance).
    The outcome is read on the host at logging steps only (`attnlab.module.is_logging_step`),
    at the epoch's end, before validation and when a checkpoint is saved.

    stop: from the first bad loss on, every step is left untaken; at the next check, saves
    last.ckpt, whose weights and optimiser state are those of before that step, and raises
    NonFiniteLossError naming the step and batch of the first bad loss. The checkpoint's step
    counter and data position are those of the check, so resuming from it (e.g. with a lower
    LR) skips the batches from the bad one to the check (at most log_every_n_steps).
    skip: each bad batch's update is dropped; the checks log how many, and stop as above once
    more than `max_skips` were dropped.

    How a step is left untaken: an optimiser with a fused implementation (AdamW, Adam, SGD with
    `fused=True`, attnlab's default on CUDA and CPU) reads a `found_inf` flag as GradScaler sets
    it and skips the update in its kernel. Any other optimiser is stepped as usual and then put
    back, tensor by tensor, from a copy taken before the step (`torch.where`; state created by
    the step is put back to zeros, an Adam/AdamW state that was never stepped). That costs a
    copy of the parameters and optimiser state; where the optimiser keeps its step counts on the
    host (torch's non-fused, non-capturable optimisers) and the parameters on a GPU, putting
    those back reads the flag on the host at every step.
    Automatic optimisation only.
    """

    def __init__(self, policy: Literal["stop", "skip"] = "stop", max_skips: int = 100) -> None:
        if policy not in ("stop", "skip"):
            raise ValueError(f"policy={policy!r} must be 'stop' or 'skip'")
        self.policy = policy
        self.max_skips = max_skips
        self.skipped = 0  # batches dropped up to the last check
        self._skip: torch.Tensor | None = None  # this step is not taken (device, bool)
        self._halted: torch.Tensor | None = None  # stop: a bad loss since the last check
        self._dropped: torch.Tensor | None = None  # skip: batches dropped since the last check
        self._first: torch.Tensor | None = None  # global step of the first bad loss, or -1
        self._first_value: torch.Tensor | None = None  # and that loss
        self._where: dict[int, str] = {}  # global step -> "step S (epoch E, batch B)"
        self._hooks: list[Any] = []
        self._scaler_flag: torch.Tensor | None = None  # GradScaler's found_inf, if it set one
        # Non-fused optimisers: what a step changes, and a copy of it from before the step
        self._copies: tuple[tuple[int, ...], list[torch.Tensor], list[torch.Tensor]] | None = None

    # -- the device side, every step ------------------------------------------------------

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning runs forward and backward inside optimizer.step(closure): the flag is known
        # at on_before_optimizer_step, after the closure; torch's post-hook follows the update.
        for optimizer in trainer.optimizers:
            self._hooks.append(optimizer.register_step_post_hook(self._after_step))

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        loss = loss.detach()
        bad = ~torch.isfinite(loss)
        step = trainer.global_step
        if self._first is None:
            self._reset(loss.device)
        assert self._first is not None and self._first_value is not None
        first = (self._first < 0) & bad
        self._first = torch.where(first, step, self._first)
        self._first_value = torch.where(first, loss.float(), self._first_value)
        if self.policy == "stop":
            self._halted = self._halted | bad
            self._skip = self._halted
        else:  # with gradient accumulation, a bad micro-batch drops the step
            self._dropped = self._dropped + bad
            self._skip = bad if self._skip is None else self._skip | bad
        batch_idx = trainer.fit_loop.epoch_loop.batch_idx
        self._where[step] = f"step {step} (epoch {trainer.current_epoch}, batch {batch_idx})"

    def _reset(self, device: torch.device) -> None:
        self._halted = torch.zeros((), dtype=torch.bool, device=device)
        self._dropped = torch.zeros((), dtype=torch.long, device=device)
        self._first = torch.full((), -1, dtype=torch.long, device=device)
        self._first_value = torch.zeros((), device=device)
        self._where = {}

    @staticmethod
    def _fused(optimizer: torch.optim.Optimizer) -> bool:
        return getattr(optimizer, "_step_supports_amp_scaling", False) and all(
            group.get("fused") for group in optimizer.param_groups
        )

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        self._before_step(optimizer)

    def _before_step(self, optimizer: torch.optim.Optimizer, *args: Any) -> None:
        if self._skip is None:
            return
        if self._fused(optimizer):  # the kernel skips the update, as under GradScaler
            # GradScaler (fp16) may have set its own flag for this step: skip if either says so.
            self._scaler_flag = getattr(optimizer, "found_inf", None)
            flag = self._skip.float()
            if self._scaler_flag is not None:
                flag = torch.maximum(flag, self._scaler_flag.to(flag.device))
            optimizer.found_inf = flag  # type: ignore[attr-defined]
            return
        tensors = self._stepped(optimizer)
        key = tuple(id(t) for t in tensors)
        if self._copies is None or self._copies[0] != key:  # new state, or other parameters
            self._copies = (key, tensors, [torch.empty_like(t) for t in tensors])
        with torch.no_grad():
            torch._foreach_copy_(self._copies[2], tensors)  # one call for all tensors

    def _after_step(self, optimizer: torch.optim.Optimizer, *args: Any) -> None:
        skip, self._skip = self._skip, None
        if skip is None:
            return
        if self._fused(optimizer):
            if self._scaler_flag is None:
                del optimizer.found_inf  # type: ignore[attr-defined]
            else:  # GradScaler's own, which it deletes itself
                optimizer.found_inf = self._scaler_flag  # type: ignore[attr-defined]
            return
        if self._copies is None:  # no copy taken: not a step of the loop's optimiser
            return
        before = dict(zip(self._copies[0], self._copies[2], strict=True))
        with torch.no_grad():  # in place, on parameters too
            for tensor in self._stepped(optimizer):
                # State the step created did not exist before: fresh state is zeros (Adam's).
                old = before.get(id(tensor))
                old = torch.zeros_like(tensor) if old is None else old
                # .to: a host read only for host-side state (step counts) of GPU weights
                torch.where(skip.to(tensor.device), old, tensor, out=tensor)

    @staticmethod
    def _stepped(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
        """What a step changes: the parameters with a gradient, and their state tensors."""
        out = []
        for group in optimizer.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    out.append(param)
                    state = optimizer.state.get(param, {}).values()
                    out += [v for v in state if isinstance(v, torch.Tensor)]
        return out

    # -- the host side, at logging steps ---------------------------------------------------

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        from attnlab.module import is_logging_step  # attnlab.module imports no callbacks

        accumulating = (batch_idx + 1) % trainer.accumulate_grad_batches != 0
        if not accumulating or batch_idx + 1 == trainer.num_training_batches:
            self._skip = None  # stepped, or not (GradScaler skips the step of an fp16 overflow)
        if is_logging_step(trainer, batch_idx):
            self.check(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            self.check(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.check(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.check(trainer)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks, self._copies = [], None

    def check(self, trainer: pl.Trainer) -> None:
        """Read what the device recorded since the last check (the host read); raise
        NonFiniteLossError if the policy says stop."""
        if self._first is None:
            return
        assert self._dropped is not None and self._first_value is not None
        first, dropped = torch.stack([self._first, self._dropped]).tolist()  # one read
        if first < 0:
            return
        value, where = float(self._first_value), self._where.get(first, f"step {first}")
        self._reset(self._first.device)
        if self.policy == "skip":
            self.skipped += dropped
            log.warning(
                "Non-finite loss %s at %s: dropped %d batches since the last check (%d in all)",
                value,
                where,
                dropped,
                self.skipped,
            )
            if self.skipped <= self.max_skips:
                return
        path = save_last_checkpoint(trainer)
        if self.policy == "stop":
            state = f"the state of before that step (checked at step {trainer.global_step - 1})"
        else:
            state = f"dropped {self.skipped} batches, more than max_skips={self.max_skips}"
        raise NonFiniteLossError(
            f"loss is {value} at {where}; last good state saved to {path} ({state})"
        )

    def state_dict(self) -> dict[str, Any]:
        dropped = int(self._dropped) if self._dropped is not None else 0  # at a save: a read
        return {"skipped": self.skipped + dropped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = state_dict.get("skipped", 0)
