"""What metrics.json records of a finished run besides its metrics: size, compute, speed, where
its best checkpoint is, and which config options it chose."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from attnlab.run.ladder_rungs import flops_per_token
from attnlab.run.validation import chosen_options

if TYPE_CHECKING:
    import lightning.pytorch as pl


def tokens_seen(module: pl.LightningModule, trainer: pl.Trainer) -> int:
    """The tokens trained on, summed over DDP ranks (each counts its own batches)."""
    import torch

    count = torch.tensor(module.tokens_seen, dtype=torch.int64, device=trainer.strategy.root_device)
    return int(trainer.strategy.reduce(count, reduce_op="sum"))


def finished_record(
    cfg: DictConfig,
    module: pl.LightningModule,
    trainer: pl.Trainer,
    metrics: dict[str, Any],
    *,
    parameters: dict[str, int],
    tokens: int,
    best_checkpoint: str,
    fit_time: float,
    start: float,
) -> dict[str, Any]:
    """metrics.json of a run that fitted in `fit_time` seconds and began at `start`
    (time.perf_counter)."""
    per_token = flops_per_token(module.task, module.network, cfg)
    return {
        "status": "done",
        "optimized_metric": cfg.get("optimized_metric"),
        "metrics": metrics,
        "parameters": parameters,
        "flops_per_token": per_token,
        "tokens_seen": tokens,
        # the compute of a scaling law's fit (attnlab-compare --ladder)
        "training_flops": per_token * tokens if per_token is not None else None,
        "tokens_per_sec": round(tokens / fit_time, 1) if fit_time > 0 else None,
        "global_step": trainer.global_step,
        # Processes that trained together (devices x num_nodes); the global batch is
        # data.batch_size x world_size x trainer.accumulate_grad_batches.
        "world_size": trainer.world_size,
        "wall_time_s": round(time.perf_counter() - start, 2),
        "best_checkpoint": best_checkpoint or None,
        "choices": chosen_options(),
    }
