"""Parameter counts, for comparing networks of different shapes at equal size."""

from __future__ import annotations

from collections.abc import Iterable

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


def parameter_count(module: nn.Module) -> int:
    """All of a module's parameters, each tied tensor once."""
    return sum(p.numel() for p in module.parameters())


def training_flops(
    matmul_params: int, n_layers: int, d_model: int, n_keys: int, layer_keys: int | None = None
) -> int:
    """Training FLOPs (forward + backward) for one token: 6 per matmul weight (2 forward, 4
    backward), plus attention scores and weighted sums over `n_keys` keys in each layer
    (2 * 2 * d_model forward, times 3) — the PaLM appendix B / nanoGPT estimate.
    layer_keys: the keys summed over the layers, where they differ (`attended_keys`);
    None: n_layers * n_keys."""
    if layer_keys is None:
        layer_keys = n_layers * n_keys
    return 6 * matmul_params + 12 * d_model * layer_keys


def attended_keys(layers: Iterable[nn.Module], seq_len: int, extra: int = 0) -> int:
    """Keys one token attends to, summed over `layers`: min(seq_len, W) for a self-attention
    with a sliding window W (`self_attn.window`), seq_len otherwise, plus `extra` per layer
    (a decoder's cross-attention keys)."""
    total = 0
    for layer in layers:
        window = getattr(getattr(layer, "self_attn", None), "window", None)
        total += (seq_len if window is None else min(seq_len, window)) + extra
    return total
