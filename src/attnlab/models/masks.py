"""Attention masks as predicates, FlexAttention's `mask_mod` convention.

A mask_mod is `mask_mod(b, h, q_idx, kv_idx) -> bool tensor`, True where query q_idx of batch
row b and head h may attend to key kv_idx. q_idx is the query's absolute position (a cached
decoding step's queries sit after the cached keys), so one predicate serves training, prefill
and every decoding step. The same function runs in two ways:
- FlexAttention calls it on scalar index tensors (vmapped) to build a BlockMask;
- `materialize` calls it once on broadcastable index grids, b (B,1,1,1), h (1,H,1,1),
  q (1,1,Tq,1), kv (1,1,1,Tk), giving a boolean mask broadcastable to (B, H, Tq, Tk) with
  only the dimensions the predicates read (padding: (B,1,1,Tk); causal: (1,1,Tq,Tk)).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

MaskMod = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def and_masks(*mods: MaskMod) -> MaskMod:
    """Visible where every predicate says so."""

    def mask_mod(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        result = mods[0](b, h, q, kv)
        for mod in mods[1:]:
            result = result & mod(b, h, q, kv)
        return result

    return mask_mod


def or_masks(*mods: MaskMod) -> MaskMod:
    """Visible where any predicate says so."""

    def mask_mod(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        result = mods[0](b, h, q, kv)
        for mod in mods[1:]:
            result = result | mod(b, h, q, kv)
        return result

    return mask_mod


def causal(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
    """Query i sees keys 0..i."""
    return q >= kv


def prefix(prefix_len: int) -> MaskMod:
    """The first prefix_len keys are visible to every query (a prefix LM's source)."""

    def mask_mod(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return kv < prefix_len

    return mask_mod


def padding(key_padding_mask: Tensor) -> MaskMod:
    """key_padding_mask: bool (B, Tk), True at padding keys, which no query sees."""

    def mask_mod(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return ~key_padding_mask[b, kv]

    return mask_mod


def sliding_window(window: int, is_causal: bool) -> MaskMod:
    """Keys within `window` positions: causal i - W < j (with `causal`, i - W < j <= i);
    bidirectional |i - j| < W. Every query keeps itself."""

    def mask_mod(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        distance = q - kv
        return distance < window if is_causal else distance.abs() < window

    return mask_mod


def materialize(mask_mod: MaskMod, batch: int, heads: int, queries: Tensor, n_keys: int) -> Tensor:
    """The boolean mask of `mask_mod`, broadcastable to (B, H, Tq, Tk).

    queries: the absolute positions (Tq,) of the queries; keys are 0..n_keys-1.
    """
    device = queries.device
    b = torch.arange(batch, device=device)[:, None, None, None]  # (B, 1, 1, 1)
    h = torch.arange(heads, device=device)[None, :, None, None]  # (1, H, 1, 1)
    q = queries[None, None, :, None]  # (1, 1, Tq, 1)
    kv = torch.arange(n_keys, device=device)[None, None, None, :]  # (1, 1, 1, Tk)
    return mask_mod(b, h, q, kv)
