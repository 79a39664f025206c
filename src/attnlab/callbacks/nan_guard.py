"""A guard against NaN/Inf training loss that reads the loss on the host only at checks
(`NanGuard`)."""

from __future__ import annotations

import logging
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from attnlab.callbacks.run_checkpoint import save_last_checkpoint

log = logging.getLogger(__name__)


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
        # (global step, epoch, batch) of the first bad loss since the last check, step -1 if
        # none, and that loss: on the device, so the guard's state stays the same size.
        self._first: torch.Tensor | None = None
        self._first_value: torch.Tensor | None = None
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
        first = (self._first[0] < 0) & bad
        batch_idx = trainer.fit_loop.epoch_loop.batch_idx
        at = (step, trainer.current_epoch, batch_idx)
        new = [torch.where(first, n, old) for n, old in zip(at, self._first, strict=True)]
        self._first = torch.stack(new)
        self._first_value = torch.where(first, loss.float(), self._first_value)
        if self.policy == "stop":
            self._halted = self._halted | bad
            self._skip = self._halted
        else:  # with gradient accumulation, a bad micro-batch drops the step
            self._dropped = self._dropped + bad
            self._skip = bad if self._skip is None else self._skip | bad

    def _reset(self, device: torch.device) -> None:
        self._halted = torch.zeros((), dtype=torch.bool, device=device)
        self._dropped = torch.zeros((), dtype=torch.long, device=device)
        self._first = torch.full((3,), -1, dtype=torch.long, device=device)
        self._first_value = torch.zeros((), device=device)

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
        first, epoch, batch, dropped = torch.cat([self._first, self._dropped[None]]).tolist()
        if first < 0:  # (one read, above)
            return
        value, where = float(self._first_value), f"step {first} (epoch {epoch}, batch {batch})"
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
