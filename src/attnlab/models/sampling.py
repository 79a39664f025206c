"""Choosing the next token from logits: greedy, temperature, top-k and top-p (nucleus)."""

from __future__ import annotations

import torch
from torch import Tensor


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Set to -inf every logit outside the top k, then outside the top-p nucleus.

    logits: (..., V). top_k keeps exactly k tokens (ties broken by torch.topk). top_p keeps the
    smallest set of most likely tokens whose probability reaches top_p, and always the most
    likely one. None (or top_p = 1) turns a filter off.
    """
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        values, indices = logits.topk(min(top_k, logits.size(-1)), dim=-1)  # (..., k)
        # Scatter rather than `logits < k-th value`, which would keep ties beyond k.
        logits = torch.full_like(logits, float("-inf")).scatter(-1, indices, values)
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")
        if top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)  # (..., V)
            probs = sorted_logits.softmax(dim=-1)
            # Drop a token once the more likely ones already reach top_p: what remains is the
            # smallest set with mass >= top_p, and the first token (mass before it 0) stays.
            mass_before = probs.cumsum(dim=-1) - probs
            drop_sorted = mass_before >= top_p
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # unsort
            logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Next token ids (...,) from logits (..., V).

    temperature 0 is greedy (argmax). Otherwise sample from softmax(logits / temperature)
    after top-k, then top-p filtering (both on the tempered distribution).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = filter_logits(logits / temperature, top_k, top_p)
    probs = logits.softmax(dim=-1).reshape(-1, logits.size(-1))  # multinomial wants 1-D or 2-D
    return torch.multinomial(probs, 1, generator=generator).view(logits.shape[:-1])
