"""ALiBi (Press et al., 2022): no position embeddings; attention scores get a distance penalty."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attnlab.models.positional import AttentionPositions


def alibi_slopes(n_heads: int) -> Tensor:
    """The paper's per-head slopes: a geometric sequence 2^(-8/n), 2^(-16/n), ..., 2^(-8).

    For n heads not a power of two: the slopes of the nearest lower power of two, then every
    other slope of twice that many heads (the authors' reference code).
    """
    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = [2 ** (-8 * (i + 1) / closest) for i in range(closest)]
    if closest < n_heads:
        extra = [2 ** (-8 * (i + 1) / (2 * closest)) for i in range(2 * closest)]
        slopes += extra[0::2][: n_heads - closest]
    return torch.tensor(slopes)


def alibi_bias(slopes: Tensor, n_queries: int, n_keys: int, past: int = 0) -> Tensor:
    """Score bias (H, Tq, Tk): -slope * |distance| between query (at past + i) and key j.

    Causal attention only ever sees keys at or before the query, where this is the paper's
    -slope * (i - j); bidirectional encoders use the symmetric distance.
    """
    queries = torch.arange(past, past + n_queries, device=slopes.device)[:, None]  # (Tq, 1)
    keys = torch.arange(n_keys, device=slopes.device)[None, :]  # (1, Tk)
    distance = (queries - keys).abs().to(slopes.dtype)  # (Tq, Tk)
    return -slopes[:, None, None] * distance  # (H, Tq, Tk)


class ALiBi(AttentionPositions):
    """The score bias of `alibi_bias` with the slopes of `n_heads` heads."""

    def __init__(self, n_heads: int):
        super().__init__()
        # Non-persistent: a function of the config, kept out of checkpoints.
        self.register_buffer("slopes", alibi_slopes(n_heads), persistent=False)

    def score_bias(self, n_queries: int, n_keys: int, start: int) -> Tensor:
        return alibi_bias(self.slopes, n_queries, n_keys, start)  # (H, Tq, Tk)
