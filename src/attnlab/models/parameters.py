"""Parameter counts, for comparing networks of different shapes at equal size."""

from __future__ import annotations

from torch import nn


def count_parameters(network: nn.Module) -> dict[str, int]:
    """Total, embedding and non-embedding parameter counts; each tied tensor counted once.

    Embeddings are every nn.Embedding (token and learned positional), so an output projection
    tied to one counts as embedding; an untied output projection does not.
    """
    embedding_ids = {id(m.weight) for m in network.modules() if isinstance(m, nn.Embedding)}
    params = list(network.parameters())  # parameters() yields a shared tensor only once
    total = sum(p.numel() for p in params)
    embedding = sum(p.numel() for p in params if id(p) in embedding_ids)
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding}
