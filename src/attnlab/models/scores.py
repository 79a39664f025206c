"""Changes of the attention scores, FlexAttention's `score_mod` convention.

A score_mod is `score_mod(score, b, h, q_idx, kv_idx) -> score`: the scaled score q·k of
query q_idx (its absolute position) and key kv_idx in batch row b, head h. `apply_score_mods`
calls it once on the whole (B, H, Tq, Tk) score tensor with broadcastable index grids (as
masks.materialize does), which is what the explicit kernel of attention_kernels.py needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

ScoreMod = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


def softcap(cap: float) -> ScoreMod:
    """Gemma 2's logit soft-capping: scores -> cap * tanh(scores / cap), within (-cap, cap)."""

    def score_mod(score: Tensor, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return cap * torch.tanh(score / cap)

    return score_mod


def apply_score_mods(scores: Tensor, score_mods: Sequence[ScoreMod], past: int = 0) -> Tensor:
    """scores (B, H, Tq, Tk) of queries at positions past.. through each score_mod in order."""
    if not score_mods:
        return scores
    B, H, Tq, Tk = scores.shape
    device = scores.device
    b = torch.arange(B, device=device)[:, None, None, None]  # (B, 1, 1, 1)
    h = torch.arange(H, device=device)[None, :, None, None]  # (1, H, 1, 1)
    q = torch.arange(past, past + Tq, device=device)[None, None, :, None]  # (1, 1, Tq, 1)
    kv = torch.arange(Tk, device=device)[None, None, None, :]  # (1, 1, 1, Tk)
    for score_mod in score_mods:
        scores = score_mod(scores, b, h, q, kv)
    return scores
