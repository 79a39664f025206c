"""Token embedding."""

from __future__ import annotations

import math

from torch import Tensor, nn


class TokenEmbedding(nn.Module):
    """Token ids -> vectors, multiplied by sqrt(d_model) when `scale` (as in the 2017 paper).

    The scale keeps embeddings on the same footing as the positional encoding when the
    embedding matrix is small-initialised and shared with the output projection.
    padding_idx: a row that lookups never update (nn.Embedding's padding_idx, as in BERT).
    """

    def __init__(
        self, vocab_size: int, d_model: int, scale: bool = True, padding_idx: int | None = None
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)
        self.scale = math.sqrt(d_model) if scale else 1.0

    @property
    def weight(self) -> nn.Parameter:
        """The (V, D) embedding matrix, e.g. to tie an output projection to it."""
        return self.embedding.weight

    def forward(self, tokens: Tensor) -> Tensor:
        """(B, T) int -> (B, T, D)."""
        return self.embedding(tokens) * self.scale
