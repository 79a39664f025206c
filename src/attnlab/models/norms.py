"""Normalisation layers by name."""

from __future__ import annotations

from torch import nn

_NORM_KINDS = ("layernorm",)


def build_norm(kind: str, d_model: int, eps: float = 1e-5, bias: bool = True) -> nn.Module:
    """Norm module by name; only "layernorm" for now. `bias` is the LayerNorm shift."""
    if kind == "layernorm":
        return nn.LayerNorm(d_model, eps=eps, bias=bias)
    raise ValueError(f"unknown norm {kind!r}; choose one of {list(_NORM_KINDS)}")
