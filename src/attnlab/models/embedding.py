"""Token embedding."""

from __future__ import annotations

import math
from typing import Any

import torch
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


def pad_vocab_rows(network: nn.Module, state_dict: dict[str, Tensor], prefix: str, *_: Any) -> None:
    """load_state_dict pre-hook of a network with a padded vocabulary (ModelConfig
    vocab_pad_multiple): a checkpoint saved unpadded (its tables and output projections have
    vocab_size rows) gets zero rows appended, which no lookup reads and no logit shows.
    The network names its vocabularies' sizes in `vocab_sizes`."""
    config, sizes = network.config, network.vocab_sizes
    for name, tensor in network.state_dict(keep_vars=True).items():
        saved = state_dict.get(prefix + name)
        if (
            saved is not None
            and saved.size(0) in sizes
            and saved.dim() == tensor.dim()
            and saved.shape[1:] == tensor.shape[1:]
            and saved.size(0) < tensor.size(0) == config.padded_vocab(saved.size(0))
        ):
            rows = saved.new_zeros(tensor.size(0) - saved.size(0), *saved.shape[1:])
            state_dict[prefix + name] = torch.cat([saved, rows])
