"""Key/value cache of one attention layer, for incremental (token by token) decoding."""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """The keys and values one attention layer has computed so far, (B, H, T_cached, Dh).

    Self-attention appends the new steps' k and v on every call. Cross-attention stores the
    projected memory on its first call and reuses it afterwards (see MultiHeadAttention).
    Growing by concatenation copies the cache each step; that is O(T^2) memory traffic over a
    sequence, which is negligible at our lengths and keeps the code obvious.
    """

    def __init__(self) -> None:
        self.k: Tensor | None = None  # (B, H, T_cached, Dh)
        self.v: Tensor | None = None  # (B, H, T_cached, Dh)

    def __len__(self) -> int:
        """Number of cached steps (positions)."""
        return 0 if self.k is None else self.k.size(-2)

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add new steps k, v (B, H, T_new, Dh); return all keys and values so far."""
        if self.k is None or self.v is None:
            self.k, self.v = k, v
        else:
            self.k = torch.cat([self.k, k], dim=-2)  # (B, H, T_cached + T_new, Dh)
            self.v = torch.cat([self.v, v], dim=-2)
        return self.k, self.v

    def reorder(self, indices: Tensor) -> None:
        """Keep batch rows `indices` (B_new,) in that order, e.g. the surviving beams."""
        if self.k is not None and self.v is not None:
            self.k = self.k.index_select(0, indices)
            self.v = self.v.index_select(0, indices)
