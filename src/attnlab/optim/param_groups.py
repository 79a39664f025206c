"""Weight decay on matrices only."""

from __future__ import annotations

from typing import Any

from torch import nn


def parameter_groups(
    network: nn.Module, weight_decay: float, decay_embeddings: bool = True
) -> list[dict[str, Any]]:
    """Split parameters into decayed (matrices) and non-decayed (biases, norms) groups.

    Embedding tables are matrices too; `decay_embeddings=False` exempts them (GPT-style).
    Tied tensors appear once.
    """
    embedding_ids = {id(m.weight) for m in network.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for param in network.parameters():  # parameters() yields each tied tensor once
        if not param.requires_grad:
            continue
        exempt = param.dim() < 2 or (not decay_embeddings and id(param) in embedding_ids)
        (no_decay if exempt else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]
