"""The Transformer block shared by encoders, decoders, and decoder-/encoder-only models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from attnlab.models.attention import MultiHeadAttention, flat_config
from attnlab.models.config import ModelConfig
from attnlab.models.document_mask import DocumentMask
from attnlab.models.feedforward import build_feedforward
from attnlab.models.kv_cache import KVCache
from attnlab.models.norms import build_norm

# Builds one attention sublayer: (config, self_attention, layer) -> module.
AttentionFactory = Callable[[ModelConfig, bool, int], nn.Module]


class TransformerBlock(nn.Module):
    """Self-attention, optional cross-attention, then a feed-forward network.

    Each sublayer sits in a residual connection with dropout on its output:
    post-LN (2017 paper): x = norm(x + dropout(sublayer(x)))
    pre-LN:               x = x + dropout(sublayer(norm(x)))
    Norms are numbered in sublayer order like nn.TransformerEncoderLayer/DecoderLayer:
    norm1 self-attention, then norm2 cross-attention and norm3 feed-forward if there is
    cross-attention, else norm2 feed-forward.

    `config` sets every sublayer; `layer` (0-based) lets layers differ (a sliding window on
    local layers, see ModelConfig.window_of). attention_factory(config, self_attention, layer)
    builds each attention sublayer: MultiHeadAttention, or a variant of the user's.
    Cross-attention takes the heads and QK-norm but no positions and no window.
    """

    def __init__(
        self,
        config: ModelConfig,
        cross_attention: bool = False,
        layer: int = 0,
        attention_factory: AttentionFactory = MultiHeadAttention,
    ):
        super().__init__()
        d_model, eps, bias = config.d_model, config.layer_norm_eps, config.bias
        self.norm_first = config.norm_first
        self.self_attn = attention_factory(config, True, layer)
        self.cross_attn = attention_factory(config, False, layer) if cross_attention else None
        assert config.d_ff is not None  # resolved by ModelConfig
        self.ffn = build_feedforward(config.activation, d_model, config.d_ff, config.dropout, bias)
        self.norm1 = build_norm(config.norm, d_model, eps, bias)
        self.norm2 = build_norm(config.norm, d_model, eps, bias)
        self.norm3 = build_norm(config.norm, d_model, eps, bias) if cross_attention else None
        self.dropout = nn.Dropout(config.dropout)  # residual dropout, after each sublayer

    @classmethod
    def from_config(cls, config: ModelConfig, cross_attention: bool = False) -> TransformerBlock:
        """The block of `config` (layer 0)."""
        return cls(config, cross_attention)

    @classmethod
    def from_arguments(
        cls,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        cross_attention: bool = False,
        norm: str = "layernorm",
        **options: Any,
    ) -> TransformerBlock:
        """The flat form of the arguments; options: bias, layer_norm_eps, n_kv_heads, qk_norm,
        relative_pos (None: no positions in attention) and max_len, as ModelConfig takes them."""
        config = flat_config(
            d_model=d_model,
            n_heads=n_heads,
            d_ff=d_ff,
            dropout=dropout,
            activation=activation,
            norm_first=norm_first,
            norm=norm,
            **options,
        )
        return cls(config, cross_attention)

    def _residual(self, x: Tensor, norm: nn.Module, sublayer: Callable[[Tensor], Tensor]) -> Tensor:
        """Residual connection around `sublayer`, with `norm` before (pre-LN) or after."""
        if self.norm_first:
            return x + self.dropout(sublayer(norm(x)))
        return norm(x + self.dropout(sublayer(x)))

    def forward(
        self,
        x: Tensor,
        padding_mask: Tensor | None = None,
        causal: bool = False,
        memory: Tensor | None = None,
        memory_padding_mask: Tensor | None = None,
        cache: KVCache | None = None,
        cross_cache: KVCache | None = None,
        prefix_len: int = 0,
        documents: DocumentMask | None = None,
    ) -> Tensor:
        """x: (B, T, D) -> (B, T, D).

        padding_mask: bool (B, T), True at padding (B, T_cached + T with a cache). memory:
        (B, S, D) for cross-attention, with memory_padding_mask bool (B, S).
        cache / cross_cache: this layer's self- / cross-attention KVCache for incremental
        decoding, where x holds only the new steps (see MultiHeadAttention.forward).
        prefix_len: keys every query may see despite `causal` (a prefix LM's source).
        documents: packed documents for causal self-attention (document_mask.py).
        """
        cross_attn = self.cross_attn
        if (cross_attn is None) != (memory is None):
            raise ValueError(
                "`memory` must be given exactly when the block has cross-attention "
                f"(cross_attention={cross_attn is not None}, memory given={memory is not None})"
            )

        x = self._residual(
            x,
            self.norm1,
            lambda h: self.self_attn(
                h,
                key_padding_mask=padding_mask,
                causal=causal,
                cache=cache,
                prefix_len=prefix_len,
                documents=documents,
            ),
        )
        if cross_attn is not None:
            x = self._residual(
                x,
                self.norm2,
                lambda h: cross_attn(
                    h, memory, key_padding_mask=memory_padding_mask, cache=cross_cache
                ),
            )
            return self._residual(x, self.norm3, self.ffn)
        return self._residual(x, self.norm2, self.ffn)
