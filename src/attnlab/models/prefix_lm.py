"""Sequence-to-sequence with a decoder-only network: source and target as one sequence.

Layout of a batch (B rows, source width S):

    [pad pad s1 s2 s3 | BOS y1 y2 EOS pad]
     left-aligned       the target, right-padded
     source (S cols)

The source is moved against the target so that every row's real tokens are contiguous: the
target's BOS is the separator, relative positions (RoPE, ALiBi) count true distances, and
absolute positions are given per row (the first real token is position 0). Decoding appends
at the same column for every row, so a batch shares one KV cache.
"""

from __future__ import annotations

import torch
from torch import Tensor

PREFIX_ATTENTION = ("causal", "full")  # full: the source attends to itself both ways


def left_align(ids: Tensor, padding_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Right-padded (B, S) ids and mask (True at padding) -> the same rows, padding first."""
    # A stable sort on "is a real token" puts pads (0) first and keeps each group's order.
    order = (~padding_mask).to(torch.int8).argsort(dim=1, stable=True)  # (B, S)
    return ids.gather(1, order), padding_mask.gather(1, order)


def row_positions(padding_mask: Tensor, start: int = 0, left_pads: Tensor | None = None) -> Tensor:
    """Per-row positions (B, T) of columns start..start+T-1: column minus the row's left pads.

    padding_mask: bool (B, T) of these columns; left_pads (B,): each row's left padding, if it
    lies in earlier (cached) columns. Pad columns get a valid position too; they are masked.
    """
    B, T = padding_mask.shape
    columns = torch.arange(start, start + T, device=padding_mask.device).expand(B, T)
    if left_pads is None:  # the left padding is in these columns: count it
        left_pads = (padding_mask.long().cumprod(dim=1)).sum(dim=1)  # (B,)
    return (columns - left_pads[:, None]).clamp(min=0)  # (B, T)
