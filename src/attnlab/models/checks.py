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


def _check_divides(key: str, value: int, total_key: str, total: int, why: str = "") -> None:
    """`value` (model.<key>) must be >= 1 and divide `total` (model.<total_key>)."""
    if value < 1 or total % value:
        valid = ", ".join(str(n) for n in range(1, total + 1) if total % n == 0)
        raise invalid(
            key,
            value,
            f"{total_key} ({total}) must be divisible by {key} ({value}){why}; with "
            f"model.{total_key}={total}, {key} can be {valid}",
        )


def check_heads(d_model: int, n_heads: int, n_kv_heads: int | None = None) -> None:
    """Heads split d_model evenly, and key/value heads split the query heads evenly."""
    check_positive("n_heads", n_heads)
    _check_divides("n_heads", n_heads, "d_model", d_model)
    if n_kv_heads is not None:
        why = ": each key/value head serves the same number of query heads"
        _check_divides("n_kv_heads", n_kv_heads, "n_heads", n_heads, why)
