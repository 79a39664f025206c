"""Lightning's `rank_zero_only`, without importing Lightning where it is not imported yet:
importing it takes seconds, and commands that print help, a config or a config error need
none of it."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TypeVar

R = TypeVar("R")

# Where Lightning reads a process's global rank before it sets one (lightning.fabric's
# utilities/rank_zero.py, _get_rank), in its order: LOCAL_RANK before SLURM_PROCID.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def global_rank() -> int:
    """This process's global rank: Lightning's once it is imported (its strategies set it),
    else what Lightning would read from the environment (0 outside a launched job)."""
    if "lightning.pytorch" in sys.modules:
        from lightning.pytorch.utilities import rank_zero_only

        return int(getattr(rank_zero_only, "rank", 0) or 0)
    for name in RANK_VARIABLES:
        value = os.environ.get(name)
        if value is not None:
            return int(value)
    return 0


def rank_zero_only(fn: Callable[..., R]) -> Callable[..., R | None]:
    """Run `fn` on global rank 0 only."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> R | None:
        return fn(*args, **kwargs) if global_rank() == 0 else None

    return wrapper
