"""The Transformer block shared by encoders, decoders, and decoder-/encoder-only models."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from attnlab.models.attention import MultiHeadAttention
from attnlab.models.config import ModelConfig
from attnlab.models.document_mask import DocumentMask
from attnlab.models.feedforward import build_feedforward
from attnlab.models.kv_cache import KVCache
from attnlab.models.norms import build_norm


class TransformerBlock(nn.Module):
    """Self-attention, optional cross-attention, then a feed-forward network.

    Each sublayer sits in a residual connection with dropout on its output:
    post-LN (2017 paper): x = norm(x + dropout(sublayer(x)))
    pre-LN:               x = x + dropout(sublayer(norm(x)))
    Norms are numbered in sublayer order like nn.TransformerEncoderLayer/DecoderLayer:
    norm1 self-attention, then norm2 cross-attention and norm3 feed-forward if there is
    cross-attention, else norm2 feed-forward.

    activation: "relu" | "gelu" | "swiglu" (a gated network, see feedforward.py). n_kv_heads,
    qk_norm, relative_pos (a position scheme, see MultiHeadAttention) and max_len configure
    self-attention; cross-attention takes the heads and QK-norm but no positions.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        cross_attention: bool = False,
        norm: str = "layernorm",
        bias: bool = True,
        layer_norm_eps: float = 1e-5,
        n_kv_heads: int | None = None,
        qk_norm: bool = False,
        relative_pos: str | None = None,
        max_len: int | None = None,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(
            d_model, n_heads, dropout, bias, n_kv_heads, qk_norm, relative_pos, max_len
        )
        self.cross_attn = (
            MultiHeadAttention(d_model, n_heads, dropout, bias, n_kv_heads, qk_norm)
            if cross_attention
            else None
        )
        self.ffn = build_feedforward(activation, d_model, d_ff, dropout, bias)
        self.norm1 = build_norm(norm, d_model, layer_norm_eps, bias)
        self.norm2 = build_norm(norm, d_model, layer_norm_eps, bias)
        self.norm3 = build_norm(norm, d_model, layer_norm_eps, bias) if cross_attention else None
        self.dropout = nn.Dropout(dropout)  # residual dropout, after each sublayer

    @classmethod
    def from_config(cls, config: ModelConfig, cross_attention: bool = False) -> TransformerBlock:
        """The block of `config`; self-attention applies the config's attention-side positions."""
        return cls(
            config.d_model,
            config.n_heads,
            config.d_ff,
            config.dropout,
            config.activation,
            config.norm_first,
            cross_attention=cross_attention,
            norm=config.norm,
            bias=config.bias,
            layer_norm_eps=config.layer_norm_eps,
            n_kv_heads=config.n_kv_heads,
            qk_norm=config.qk_norm,
            relative_pos=config.pos,
            max_len=config.max_len,
        )

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
