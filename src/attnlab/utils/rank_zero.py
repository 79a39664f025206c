"""Lightning's `rank_zero_only`, imported at the first call: importing Lightning takes seconds,
and commands that print help or a config never call these functions."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

R = TypeVar("R")


def rank_zero_only(fn: Callable[..., R]) -> Callable[..., R | None]:
    """Run `fn` on global rank 0 only (Lightning sets the rank when it launches processes)."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> R | None:
        from pytorch_lightning.utilities import rank_zero_only as lightning_rank_zero_only

        return lightning_rank_zero_only(fn)(*args, **kwargs)

    return wrapper
