"""Normalisation layers by name."""

from __future__ import annotations

from torch import nn

from attnlab.models.checks import check_choice

NORM_KINDS = ("layernorm", "rmsnorm")


def build_norm(kind: str, d_model: int, eps: float = 1e-5, bias: bool = True) -> nn.Module:
    """Norm module by name.

    "layernorm": (x - mean) / std * gain + shift (`bias` is the shift).
    "rmsnorm": x / rms(x) * gain (Zhang & Sennrich, 2019): no centring and no shift.
    """
    check_choice("norm", kind, NORM_KINDS)
    if kind == "layernorm":
        return nn.LayerNorm(d_model, eps=eps, bias=bias)
    return nn.RMSNorm(d_model, eps=eps)
