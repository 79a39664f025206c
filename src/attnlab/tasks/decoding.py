"""Autoregressive decoding for encoder-decoder networks."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def greedy_decode(
    network: nn.Module,
    src: torch.Tensor,
    src_padding_mask: torch.Tensor,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_len: int,
) -> torch.Tensor:
    """Greedy decoding: (B, S) source -> (B, <=max_len) target ids starting with BOS.

    Finished rows are padded after their EOS. Each step re-runs the decoder on the prefix; the
    KV cache for long outputs comes with incremental decoding.
    """
    memory = network.encode(src, src_padding_mask)  # (B, S, D)
    ys = torch.full((src.size(0), 1), bos_id, dtype=torch.long, device=src.device)
    finished = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    for _ in range(max_len - 1):
        logits = network.decode(ys, memory, memory_padding_mask=src_padding_mask)  # (B, T, V)
        next_id = logits[:, -1].argmax(dim=-1)  # (B,)
        next_id = next_id.masked_fill(finished, pad_id)
        ys = torch.cat([ys, next_id[:, None]], dim=1)
        finished |= next_id == eos_id
        if finished.all():
            break
    return ys


def strip_special(ids: list[int], bos_id: int, eos_id: int, pad_id: int) -> list[int]:
    """Token ids up to the first EOS, without BOS and padding."""
    out = []
    for token in ids:
        if token == eos_id:
            break
        if token not in (bos_id, pad_id):
            out.append(token)
    return out
