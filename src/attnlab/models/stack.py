"""The block stack: N blocks then a final norm, the body of every architecture.

EncoderDecoder's `encoder` and `decoder` are BlockStacks; DecoderOnly and EncoderOnly are
BlockStacks themselves, with embeddings in front and heads after, so their blocks keep the
state_dict keys `layers.<i>.` and `norm.` that checkpoints hold.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import Tensor, nn

from attnlab.models.block import TransformerBlock
from attnlab.models.config import ModelConfig
from attnlab.models.kv_cache import KVCache
from attnlab.models.norms import build_norm

# One KVCache per layer, or a (self-attention, cross-attention) pair with cross-attention.
LayerCaches = list[KVCache] | list[tuple[KVCache, KVCache]]


class BlockStack(nn.Module):
    """`layers`: n_layers blocks; `norm`: the norm after the last one.

    final_norm None: a norm only for pre-LN, whose residual stream is never normalised
    otherwise; post-LN blocks already end with one. Subclasses change the block by
    overriding `make_block` (e.g. a block without a feed-forward network).
    """

    layers: nn.ModuleList
    norm: nn.Module

    def __init__(
        self,
        config: ModelConfig | None = None,
        n_layers: int = 0,
        cross_attention: bool = False,
        final_norm: bool | None = None,
    ):
        super().__init__()
        if config is not None:
            self.add_blocks(config, n_layers, cross_attention, final_norm)

    def make_block(self, config: ModelConfig, cross_attention: bool, layer: int = 0) -> nn.Module:
        """Block number `layer`: a TransformerBlock unless a subclass says otherwise (an
        override may leave out `layer`)."""
        return TransformerBlock(config, cross_attention, layer)

    def add_blocks(
        self,
        config: ModelConfig,
        n_layers: int,
        cross_attention: bool = False,
        final_norm: bool | None = None,
    ) -> None:
        """Register `layers` and `norm` (after the embeddings, in a network that has them:
        registration order is the order of initialisation)."""
        takes_layer = "layer" in inspect.signature(self.make_block).parameters
        self.layers = nn.ModuleList(
            self.make_block(config, cross_attention, **({"layer": i} if takes_layer else {}))
            for i in range(n_layers)
        )
        if final_norm is None:
            final_norm = config.norm_first
        self.norm = (
            build_norm(config.norm, config.d_model, config.layer_norm_eps, config.bias)
            if final_norm
            else nn.Identity()
        )

    def has_attention_variants(self) -> bool:
        """Whether a layer's attention masks or scores go beyond causality and padding (a
        window, soft-capping, a registered variant): they need the materialised mask."""
        return any(
            getattr(getattr(layer, "self_attn", None), "needs_explicit_mask", False)
            for layer in self.layers
        )

    def run_blocks(self, x: Tensor, caches: LayerCaches | None = None, **inputs: Any) -> Tensor:
        """x: (B, T, D) -> (B, T, D): every block, then the final norm.

        inputs: as TransformerBlock.forward takes them (padding_mask, causal, memory, ...).
        caches: one per layer (see LayerCaches) for incremental decoding, where x holds only
        the new steps.
        """
        if caches is not None and len(caches) != len(self.layers):
            raise ValueError(
                f"need one KVCache per layer (a self/cross pair with cross-attention): got "
                f"{len(caches)}, have {len(self.layers)}"
            )
        for index, layer in enumerate(self.layers):
            cache = None if caches is None else caches[index]
            if isinstance(cache, tuple):  # self- and cross-attention caches
                cache, inputs["cross_cache"] = cache
            x = layer(x, cache=cache, **inputs)
        return self.norm(x)


class TransformerEncoder(BlockStack):
    """A stack of self-attention blocks over the source sequence."""

    def __init__(self, config: ModelConfig, n_layers: int, final_norm: bool | None = None):
        super().__init__(config, n_layers, cross_attention=False, final_norm=final_norm)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """x: (B, S, D), padding_mask: bool (B, S) True at padding -> (B, S, D)."""
        return self.run_blocks(x, padding_mask=padding_mask)


class TransformerDecoder(BlockStack):
    """A stack of causal self-attention + cross-attention blocks over the target sequence."""

    def __init__(self, config: ModelConfig, n_layers: int, final_norm: bool | None = None):
        super().__init__(config, n_layers, cross_attention=True, final_norm=final_norm)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        padding_mask: Tensor | None = None,
        memory_padding_mask: Tensor | None = None,
        caches: list[tuple[KVCache, KVCache]] | None = None,
    ) -> Tensor:
        """x: (B, T, D), memory: (B, S, D) -> (B, T, D). Self-attention is always causal.

        caches: one (self-attention, cross-attention) KVCache pair per layer for incremental
        decoding; x then holds only the new steps.
        """
        return self.run_blocks(
            x,
            caches,
            padding_mask=padding_mask,
            causal=True,
            memory=memory,
            memory_padding_mask=memory_padding_mask,
        )
