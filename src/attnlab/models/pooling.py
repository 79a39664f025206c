"""One vector per sequence, for sequence classification with any of the architectures."""

from __future__ import annotations

import torch
from torch import Tensor, nn

POOLING_KINDS = ("cls", "mean", "last")


def last_token_index(padding_mask: Tensor) -> Tensor:
    """bool (B, T), True at padding -> (B,) column of each row's last non-pad token.

    Works for right and left padding alike; an all-pad row gives column 0.
    """
    T = padding_mask.size(1)
    columns = torch.arange(T, device=padding_mask.device).expand_as(padding_mask)  # (B, T)
    return columns.masked_fill(padding_mask, -1).amax(dim=1).clamp(min=0)  # (B,)


class Pooler(nn.Module):
    """Sequence summary from hidden states (B, T, D) -> (B, D).

    "cls": BERT's pooler, tanh(dense(h_0)) on the first token, which sees the whole sequence
        in a bidirectional encoder.
    "mean": the average over non-pad positions, without parameters.
    "last": the last non-pad token, without parameters: under causal attention it is the only
        position that has seen the whole sequence (decoder-only classification, as in GPT-1).
    """

    def __init__(self, d_model: int, kind: str = "cls", bias: bool = True):
        super().__init__()
        if kind not in POOLING_KINDS:
            raise ValueError(f"unknown pooling {kind!r}; choose one of {list(POOLING_KINDS)}")
        self.kind = kind
        self.dense = nn.Linear(d_model, d_model, bias=bias) if kind == "cls" else None

    def forward(self, hidden: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """hidden: (B, T, D), padding_mask: bool (B, T), True at padding -> (B, D)."""
        if self.dense is not None:
            return torch.tanh(self.dense(hidden[:, 0]))
        if self.kind == "last":
            if padding_mask is None:
                return hidden[:, -1]
            rows = torch.arange(hidden.size(0), device=hidden.device)
            return hidden[rows, last_token_index(padding_mask)]  # (B, D)
        if padding_mask is None:
            return hidden.mean(dim=1)
        keep = (~padding_mask).unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        # An all-pad row sums to zero; clamping its count avoids 0 / 0.
        return (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)  # (B, D)
