"""Weight initialisations of the three reference models, applied with `module.apply`.

`apply` visits submodules in registration order, so that order fixes which random numbers
each weight gets: the networks register their parts in the same order as ever.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn

from attnlab.models.attention import PackedLinear


def gpt2_init(module: nn.Module) -> None:
    """GPT-2: N(0, 0.02) weights, zero biases; LayerNorm keeps its 1/0 default."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def scale_residual_outputs(layers: nn.Module, n_layers: int) -> None:
    """GPT-2: every residual branch (2 per layer) adds to the stream; scaling the output
    projections (attention's out_proj, the feed-forward's linear2) by 1/sqrt(2 n_layers)
    keeps the stream's variance from growing with depth."""
    for name, module in layers.named_modules():
        if name.endswith(("self_attn.out_proj", "ffn.linear2")):
            nn.init.normal_(module.weight, mean=0.0, std=0.02 / math.sqrt(2 * n_layers))


def bert_init(module: nn.Module) -> None:
    """BERT: N(0, 0.02) weights, zero biases and pad row, LayerNorm 1/0."""
    gpt2_init(module)
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        nn.init.zeros_(module.weight[module.padding_idx])
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def xavier_init(d_model: int) -> Callable[[nn.Module], None]:
    """The 2017 Transformer (fairseq): Xavier-uniform linear weights, zero biases, and
    N(0, d_model^-0.5) embeddings, small because they get multiplied by sqrt(d_model)."""

    def init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            # Per map of a packed [q | k | v] weight (its whole would get a smaller bound),
            # drawing the same numbers as separate matrices did.
            blocks = module.weights() if isinstance(module, PackedLinear) else [module.weight]
            for weight in blocks:
                nn.init.xavier_uniform_(weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=d_model**-0.5)

    return init
