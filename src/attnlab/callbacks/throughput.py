"""Training throughput (tokens/s) and model FLOPs utilisation (MFU)."""

from __future__ import annotations

import time
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


class Throughput(pl.Callback):
    """Logs `train/tokens_per_sec` and, when the peak is known, `train/mfu`.

    Time is measured between the ends of consecutive training batches, so data loading,
    optimiser and logging all count, as they do for the researcher waiting on the run.
    FLOPs per token come from the network (`flops_per_token(seq_len)`); the peak is
    `peak_flops` per device, or Lightning's table of common GPUs when left null.
    """

    def __init__(self, peak_flops: float | None = None, log_every_n_steps: int = 20) -> None:
        self.peak_flops = peak_flops
        self.log_every_n_steps = log_every_n_steps
        # Device tensors where counting needs the values: read only when logged.
        self._tokens: torch.Tensor | int = 0
        self._flops: torch.Tensor | float = 0.0
        self._since: float | None = None
        self._flops_by_len: dict[int, int | None] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.peak_flops is None and trainer.strategy.root_device.type == "cuda":
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

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        now = time.perf_counter()
        if self._since is None:  # the first batch includes start-up costs: skip it
            self._since = now
            return
        tokens = pl_module.task.count_tokens(batch)
        self._tokens += tokens
        seq_len = next(iter(batch.values())).size(1)
        flops_per_token = self._flops_per_token(pl_module, seq_len)
        if flops_per_token is not None:
            self._flops += tokens * flops_per_token
        if (batch_idx + 1) % self.log_every_n_steps:
            return
        if torch.cuda.is_available() and trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()
            now = time.perf_counter()
        elapsed = now - self._since
        tokens, flops = float(self._tokens), float(self._flops)  # the host reads, when logged
        metrics = {"train/tokens_per_sec": tokens * trainer.world_size / elapsed}
        if flops and self.peak_flops:
            metrics["train/mfu"] = flops / elapsed / self.peak_flops
        pl_module.log_dict(metrics, on_step=True, on_epoch=False)
        self._tokens, self._flops, self._since = 0, 0.0, now
