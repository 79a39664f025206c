"""Training throughput (tokens/s) and model FLOPs utilisation (MFU)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.throughput import get_available_flops

PRECISION_DTYPES = {
    "bf16": torch.bfloat16,
    "16": torch.float16,
    "32": torch.float32,
    "64": torch.float64,
}
Count = torch.Tensor | int | float


class EventWindows:
    """Windows timed by CUDA events, read a window late: no synchronize, no wait.

    `mark(tokens, flops)` closes the open window: the counts are copied to pinned host memory
    (non-blocking) and an event is recorded after the copy on the current stream. `ready()`
    returns the closed windows whose events the GPU has passed (`Event.query`: no wait), as
    (seconds, tokens, flops); at one mark per logging step, that is last window's, by then long
    done unless the GPU runs a whole window behind the host (then it is reported later).
    """

    def __init__(self, event: Callable[..., Any] | None = None) -> None:
        self._event = event or (lambda: torch.cuda.Event(enable_timing=True))
        self._start: Any = None
        self._closed: deque[tuple[Any, Any, Any, Any]] = deque()

    def start(self) -> None:
        self._start = self._event()
        self._start.record()

    def _to_host(self, value: Count) -> Count:
        if not isinstance(value, torch.Tensor):
            return value
        pinned = torch.cuda.is_available() and value.is_cuda
        host = torch.empty((), dtype=value.dtype, pin_memory=pinned)
        return host.copy_(value.detach(), non_blocking=True)  # read once the event is passed

    def mark(self, tokens: Count, flops: Count) -> None:
        tokens, flops = self._to_host(tokens), self._to_host(flops)
        end = self._event()
        end.record()
        self._closed.append((self._start, end, tokens, flops))
        self._start = end

    def ready(self) -> list[tuple[float, float, float]]:
        out = []
        while self._closed and self._closed[0][1].query():
            start, end, tokens, flops = self._closed.popleft()
            out.append((start.elapsed_time(end) / 1e3, float(tokens), float(flops)))
        return out


class Throughput(pl.Callback):
    """Logs `train/tokens_per_sec` and, when the peak is known, `train/mfu`.

    Time is measured between the ends of consecutive logging windows, so data loading,
    optimiser and logging all count, as they do for the researcher waiting on the run.
    On a CUDA device the windows are timed with CUDA events and read a window late
    (EventWindows): nothing waits for the GPU. On other devices, host clocks at the window's
    end. FLOPs per token come from the network (`flops_per_token(seq_len)`); the peak is
    `peak_flops` per device, or Lightning's table of common GPUs when left null.
    """

    def __init__(self, peak_flops: float | None = None, log_every_n_steps: int = 20) -> None:
        self.peak_flops = peak_flops
        self.log_every_n_steps = log_every_n_steps
        # Device tensors where counting needs the values: read only when logged.
        self._tokens: Count = 0
        self._flops: Count = 0.0
        self._since: float | None = None
        self._events: EventWindows | None = None
        self._flops_by_len: dict[int, int | None] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        cuda = trainer.strategy.root_device.type == "cuda"
        if cuda:
            self._events = EventWindows()
        if self.peak_flops is None and cuda:
            bits = str(trainer.precision).split("-")[0]
            dtype = PRECISION_DTYPES.get(bits, torch.float32)
            self.peak_flops = get_available_flops(trainer.strategy.root_device, dtype)

    def _flops_per_token(self, pl_module: pl.LightningModule, seq_len: int) -> int | None:
        # Once per sequence length, not per step. Sharded by trainer=fsdp (FSDP2), parameters
        # are DTensors whose numel is the whole tensor's: the count is the unsharded network's.
        if seq_len not in self._flops_by_len:
            network = pl_module.network
            self._flops_by_len[seq_len] = pl_module.task.flops_per_token(network, seq_len)
        return self._flops_by_len[seq_len]

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._since = None  # validation in between is not training time
        self._tokens, self._flops = 0, 0.0

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._since is None:  # the first batch includes start-up costs: skip it
            self._since = time.perf_counter()
            if self._events is not None:
                self._events.start()
            return
        tokens = pl_module.task.count_tokens(batch)
        self._tokens += tokens
        seq_len = next(iter(batch.values())).size(1)
        flops_per_token = self._flops_per_token(pl_module, seq_len)
        if flops_per_token is not None:
            self._flops += tokens * flops_per_token
        if (batch_idx + 1) % self.log_every_n_steps:
            return
        if self._events is not None:  # last window's figures, from events the GPU has passed
            self._events.mark(self._tokens, self._flops)
            windows = self._events.ready()
        else:  # host clocks: the counts are read now (a CPU waits for nothing)
            now = time.perf_counter()
            windows = [(now - self._since, float(self._tokens), float(self._flops))]
            self._since = now
        self._tokens, self._flops = 0, 0.0
        if windows:
            self._log(trainer, pl_module, *map(sum, zip(*windows, strict=True)))

    def _log(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        elapsed: float,
        tokens: float,
        flops: float,
    ) -> None:
        metrics = {"train/tokens_per_sec": tokens * trainer.world_size / elapsed}
        if flops and self.peak_flops:
            metrics["train/mfu"] = flops / elapsed / self.peak_flops
        pl_module.log_dict(metrics, on_step=True, on_epoch=False)
