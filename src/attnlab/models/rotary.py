"""Rotary position embedding (RoPE; Su et al., 2021): positions as rotations of q and k."""

from __future__ import annotations

from typing import Any

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

    def __init__(self, d_head: int, base: float = 10000.0, max_len: int = 0):
        super().__init__()
        if d_head % 2:
            raise ValueError(f"rotary embeddings need an even head size, got d_head={d_head}")
        self.d_head, self.base = d_head, base
        # Non-persistent: functions of the config, kept out of checkpoints. cos and sin of
        # every position are computed once (`reserve`), not per layer and step.
        self.register_buffer("cos", torch.empty(0, d_head), persistent=False)  # (L, Dh)
        self.register_buffer("sin", torch.empty(0, d_head), persistent=False)  # (L, Dh)
        self.reserve(max_len)

    def reserve(self, max_len: int) -> None:
        """Make the cos/sin tables cover positions 0..max_len-1 (on the tables' device and
        dtype); a longer sequence than reserved extends them on the fly."""
        if max_len <= self.cos.size(0):
            return
        # In float64 (float32 angles are off by ~1e-4 rad at position 1000), whatever the
        # module was cast to.
        f64 = dict(device=self.cos.device, dtype=torch.float64)
        inv_freq = self.base ** (-torch.arange(0, self.d_head, 2, **f64) / self.d_head)  # (Dh/2,)
        positions = torch.arange(max_len, **f64)
        angles = positions[:, None] * inv_freq[None, :]  # (L, Dh/2)
        angles = torch.cat((angles, angles), dim=-1)  # (L, Dh): one angle per channel pair
        self.cos = angles.cos().to(self.cos.dtype)
        self.sin = angles.sin().to(self.sin.dtype)

    def _apply(self, fn: Any, recurse: bool = True) -> RotaryEmbedding:
        # After a move or cast (.to, .double(), .to_empty from the meta device), compute the
        # tables again in their new dtype and device instead of keeping converted values: a
        # float64 network then rotates exactly, a materialised one gets real tables.
        super()._apply(fn, recurse)
        length = self.cos.size(0)
        self.cos, self.sin = self.cos[:0], self.sin[:0]
        self.reserve(length)
        return self

    def _cos_sin(self, start: int, length: int) -> tuple[Tensor, Tensor]:
        """cos and sin (T, Dh) of positions start..start+length-1."""
        if start + length > self.cos.size(0):  # past what was reserved: grow (rare, eager)
            self.reserve(max(start + length, 2 * self.cos.size(0)))
        return self.cos[start : start + length], self.sin[start : start + length]

    @staticmethod
    def _turn(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        # In the tables' precision (float32 unless the module was cast), then back to x's.
        return (x * cos + rotate_half(x) * sin).to(x.dtype)

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        """x: (B, H, T, Dh) at positions start..start+T-1 -> x rotated, same shape."""
        return self._turn(x, *self._cos_sin(start, x.size(-2)))

    def rotate(self, q: Tensor, k: Tensor, start: int) -> tuple[Tensor, Tensor]:
        # Keys are cached already rotated to their positions.
        cos, sin = self._cos_sin(start, q.size(-2))
        return self._turn(q, cos, sin), self._turn(k, cos, sin)
