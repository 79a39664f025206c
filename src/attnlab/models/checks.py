"""Value checks of model settings, each error one line: `model.<key>=<value> is not valid: ...`.

ModelConfig runs them all once; the modules that can also be built on their own (attention,
feed-forward, norms, positions) call the one they need.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def invalid(key: str, value: Any, why: str) -> ValueError:
    """The one error format: `model.<key>=<value> is not valid: <why>`."""
    return ValueError(f"model.{key}={value!r} is not valid: {why}")


def check_choice(key: str, value: Any, choices: Iterable[Any]) -> None:
    """Refuse `value` unless it is one of `choices`, listing them."""
    choices = list(choices)
    if value not in choices:
        raise invalid(key, value, f"choose one of {choices}")


def check_positive(key: str, value: Any) -> None:
    if not value > 0:
        raise invalid(key, value, "must be a positive number")


def check_heads(d_model: int, n_heads: int, n_kv_heads: int | None = None) -> None:
    """Heads split d_model evenly, and key/value heads split the query heads evenly."""
    check_positive("n_heads", n_heads)
    if d_model % n_heads:
        valid = ", ".join(str(n) for n in range(1, d_model + 1) if d_model % n == 0)
        raise invalid(
            "n_heads",
            n_heads,
            f"d_model ({d_model}) must be divisible by n_heads ({n_heads}); with "
            f"model.d_model={d_model}, n_heads can be {valid}",
        )
    if n_kv_heads is not None and (n_kv_heads < 1 or n_heads % n_kv_heads):
        valid = ", ".join(str(n) for n in range(1, n_heads + 1) if n_heads % n == 0)
        raise invalid(
            "n_kv_heads",
            n_kv_heads,
            f"n_heads ({n_heads}) must be divisible by n_kv_heads ({n_kv_heads}): each "
            f"key/value head serves the same number of query heads; choose one of {valid} or null",
        )
