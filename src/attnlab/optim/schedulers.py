"""Learning-rate schedules, stepped once per optimiser step.

Every factory takes `total_steps` (filled in from the trainer) so configs can swap them freely.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LambdaLR,
    LinearLR,
    LRScheduler,
    SequentialLR,
)


def inverse_sqrt(optimizer: Optimizer, warmup_steps: int, total_steps: int) -> LRScheduler:
    """The 2017 paper's schedule: linear warmup, then decay with 1/sqrt(step).

    The optimiser's lr is the peak, reached at `warmup_steps` (the paper's peak is
    d_model^-0.5 * warmup^-0.5).
    """

    if warmup_steps < 1:
        raise ValueError(f"scheduler.warmup_steps={warmup_steps} must be >= 1 for inverse_sqrt")

    def factor(step: int) -> float:
        step += 1
        return min(step / warmup_steps, math.sqrt(warmup_steps / step))

    return LambdaLR(optimizer, factor)


def warmup_cosine(
    optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr: float = 0.0
) -> LRScheduler:
    """Linear warmup to the optimiser's lr, then cosine decay to `min_lr` at `total_steps`.

    μP's groups (optim/param_groups.py) decay to min_lr times their `lr_scale`, so every
    group's lr stays its multiple of the base lr to the last step.
    """
    decay_steps = max(1, total_steps - warmup_steps)
    scales = [group.get("lr_scale") for group in optimizer.param_groups]
    if all(scale is None for scale in scales):
        decay = CosineAnnealingLR(optimizer, T_max=decay_steps, eta_min=min_lr)
    else:
        floors = [
            min_lr * (1.0 if s is None else s) / g["lr"] if g["lr"] else 0.0
            for s, g in zip(scales, optimizer.param_groups, strict=True)
        ]
        decay = LambdaLR(optimizer, [_cosine(floor, decay_steps) for floor in floors])
    if warmup_steps == 0:
        return decay
    warmup = LinearLR(
        optimizer, start_factor=1.0 / (warmup_steps + 1), end_factor=1.0, total_iters=warmup_steps
    )
    return SequentialLR(optimizer, [warmup, decay], milestones=[warmup_steps])


def _cosine(floor: float, steps: int) -> Callable[[int], float]:
    """The factor on a group's lr: 1 at step 0, down a half cosine to `floor` at `steps`."""

    def factor(step: int) -> float:
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))

    return factor


def constant(optimizer: Optimizer, total_steps: int) -> LRScheduler:
    """No schedule (a flat learning rate)."""
    return LambdaLR(optimizer, lambda step: 1.0)
