"""Rotary position embedding (RoPE; Su et al., 2021): positions as rotations of q and k."""

from __future__ import annotations

import torch
from torch import Tensor

from attnlab.models.positional import AttentionPositions


def rotate_half(x: Tensor) -> Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryEmbedding(AttentionPositions):
    """Rotates each pair of channels (i, i + Dh/2) of q or k by the angle pos * base^(-2i/Dh).

    The dot product of a query rotated at position m and a key rotated at n then depends on
    m - n only, so attention sees relative positions. Channel pairs are the two halves of the
    head (GPT-NeoX / Llama layout) rather than neighbours; both are RoPE.
    """

    def __init__(self, d_head: int, base: float = 10000.0):
        super().__init__()
        if d_head % 2:
            raise ValueError(f"rotary embeddings need an even head size, got d_head={d_head}")
        inv_freq = base ** (-torch.arange(0, d_head, 2, dtype=torch.float32) / d_head)  # (Dh/2,)
        # Non-persistent: a function of the config, kept out of checkpoints.
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        """x: (B, H, T, Dh) at positions start..start+T-1 -> x rotated, same shape."""
        positions = torch.arange(start, start + x.size(-2), device=x.device, dtype=torch.float32)
        angles = positions[:, None] * self.inv_freq[None, :]  # (T, Dh/2)
        angles = torch.cat((angles, angles), dim=-1)  # (T, Dh): one angle per channel pair
        return (x * angles.cos() + rotate_half(x) * angles.sin()).to(x.dtype)

    def rotate(self, q: Tensor, k: Tensor, start: int) -> tuple[Tensor, Tensor]:
        # Keys are cached already rotated to their positions.
        return self(q, start), self(k, start)
