"""Positions as modules: those added to the token embeddings, and the interface of those that
act inside self-attention (rotary.py, alibi.py). Which scheme is which: position_schemes.py."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _check_positions(start: int, length: int, max_len: int) -> None:
    if start < 0 or start + length > max_len:
        raise ValueError(
            f"positions {start}..{start + length - 1} do not fit in max_len={max_len}; "
            "use shorter sequences or a larger max_len"
        )


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed encoding of the 2017 paper.

    PE[pos, 2i] = sin(pos / 10000^(2i/d)) and PE[pos, 2i+1] = cos(pos / 10000^(2i/d)).
    """

    def __init__(self, d_model: int, max_len: int = 5000):
        super().__init__()
        self.max_len = max_len
        # Computed in float64 so large positions are accurate, then stored as float32.
        position = torch.arange(max_len, dtype=torch.float64)[:, None]  # (L, 1)
        two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (ceil(D/2),)
        angles = position / 10000 ** (two_i / d_model)  # (L, ceil(D/2))
        pe = torch.zeros(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(angles)
        pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])  # odd d_model has one cos fewer
        # Non-persistent: it is a function of the config, so keep it out of checkpoints.
        self.register_buffer("pe", pe.float(), persistent=False)

    def forward(self, x: Tensor, start: int = 0, positions: Tensor | None = None) -> Tensor:
        """x: (B, T, D) -> x + PE[start : start + T], or x + PE[positions] for per-row
        positions (B, T) (left-padded rows, whose first token is not at column 0)."""
        if positions is not None:  # indexing fails on a position past max_len
            return x + self.pe[positions].to(x.dtype)  # (B, T, D)
        T = x.size(1)
        _check_positions(start, T, self.max_len)
        return x + self.pe[start : start + T].to(x.dtype)  # (B, T, D)


class LearnedPositionalEmbedding(nn.Module):
    """One trained vector per absolute position (as in GPT-2 and BERT)."""

    def __init__(self, d_model: int, max_len: int):
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, d_model)

    def forward(self, x: Tensor, start: int = 0, positions: Tensor | None = None) -> Tensor:
        """x: (B, T, D) -> x + E[start : start + T], or x + E[positions] (B, T)."""
        if positions is not None:  # the lookup fails on a position past max_len
            return x + self.embedding(positions)  # (B, T, D)
        T = x.size(1)
        _check_positions(start, T, self.max_len)
        return x + self.embedding.weight[start : start + T]  # (B, T, D)


class NoPositionalEncoding(nn.Module):
    """Identity that accepts the same arguments as the other positional modules."""

    def forward(self, x: Tensor, start: int = 0, positions: Tensor | None = None) -> Tensor:
        return x


class AttentionPositions(nn.Module):
    """Positions that act inside self-attention: what a scheme with `acts_in="attention"`
    builds, once per attention layer. Override either method; the defaults do nothing.

    `start` is the position of the first query (the number of cached steps).
    """

    def rotate(self, q: Tensor, k: Tensor, start: int) -> tuple[Tensor, Tensor]:
        """q: (B, H, Tq, Dh), k: (B, Hkv, Tk, Dh), new steps only -> the same, moved."""
        return q, k

    def score_bias(self, n_queries: int, n_keys: int, start: int) -> Tensor | None:
        """A float bias (H, Tq, Tk) added to the attention scores, or None."""
        return None

    def reserve(self, max_len: int) -> None:
        """Precompute what positions 0..max_len-1 need (rotary's cos/sin), once at build."""
