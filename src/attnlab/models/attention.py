"""Scaled dot-product attention and multi-head attention, written out by hand."""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from attnlab.models.config import ModelConfig, check_heads
from attnlab.models.document_mask import DocumentMask
from attnlab.models.kv_cache import KVCache
from attnlab.models.position_schemes import build_attention_positions

# Decoding calls attention with a new key length at every step. cuDNN's attention, SDPA's first
# choice on Hopper GPUs, builds an execution plan for each new shape, which costs more than the
# step itself (an H200 decoded 136 tokens/s with it); the flash and memory-efficient kernels
# take any length. Training shapes are fixed, so training keeps cuDNN.
DECODING_KERNELS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def decoding_kernels() -> AbstractContextManager[None]:
    """SDPA limited to the kernels that suit variable lengths (a context or decorator)."""
    return sdpa_kernel(DECODING_KERNELS)


def attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """softmax(Q K^T * scale + mask) V, the slow but readable version; scale None is
    1/sqrt(d_head).

    q: (B, H, Tq, Dh); k, v: (B, H, Tk, Dh); mask: bool, broadcastable to (B, H, Tq, Tk),
    True = may attend. Like the paper (and unlike MultiHeadAttention), a query row with no
    visible key gives NaN. Used in tests as the ground truth for the fast path.
    """
    if scale is None:
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, Tq, Tk)
    else:
        scores = q @ k.transpose(-2, -1) * scale
    if is_causal:
        # Query i sees keys 0..i (top-left aligned, as in F.scaled_dot_product_attention).
        causal = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # (B, H, Tq, Tk)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v  # (B, H, Tq, Dh)


class PackedLinear(nn.Linear):
    """Several linear maps of the same input stacked into one weight: one matmul for all.

    splits: the output rows of each map, in order; each is a (rows, in_features) block of
    `weight` with fan-in in_features (what per-matrix initialisation and scaling use).
    """

    def __init__(self, in_features: int, splits: Sequence[int], bias: bool = True):
        super().__init__(in_features, sum(splits), bias=bias)
        self.splits = list(splits)

    def weights(self) -> tuple[Tensor, ...]:
        """Views of each map's weight block, (rows_i, in_features)."""
        return self.weight.split(self.splits)

    def biases(self) -> tuple[Tensor | None, ...]:
        """Views of each map's bias block (None without biases)."""
        if self.bias is None:
            return (None,) * len(self.splits)
        return self.bias.split(self.splits)


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al., 2017), self- or cross-attention.

    Q, K and V come from one packed projection `qkv_proj` (a PackedLinear), d_model ->
    (H + 2 Hkv) Dh, whose weight rows are [q (H Dh) | k (Hkv Dh) | v (Hkv Dh)], each block a
    d_model -> width map with fan-in d_model (nn.MultiheadAttention's in_proj_weight layout
    when Hkv = H; `qkv_weights()` gives the blocks as views). Self-attention runs one matmul
    for the three; cross-attention one for q (from the query) and one for k and v (from the
    memory). Checkpoints with separate q_proj, k_proj, v_proj load too (`pack_qkv`).

    n_kv_heads: key/value heads (grouped-query attention, Ainslie et al., 2023); each serves
    n_heads / n_kv_heads query heads, and the KV cache shrinks by the same factor. None: n_heads.
    qk_norm: RMSNorm over each head's q and k before the scores (as in OLMo 2, Qwen 3).
    relative_pos: a position scheme (position_schemes.py); one that acts inside attention
    ("rope" rotates q and k, "alibi" adds a distance penalty to the scores) is applied here,
    only in self-attention (positions across two sequences mean nothing). None, or a scheme
    that acts on the embeddings: nothing here. max_len: the positions to prepare for (rotary
    cos/sin tables); longer sequences still work.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        n_kv_heads: int | None = None,
        qk_norm: bool = False,
        relative_pos: str | None = None,
        max_len: int | None = None,
    ):
        super().__init__()
        check_heads(d_model, n_heads, n_kv_heads)
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.d_head = d_model // n_heads
        self.dropout = dropout
        self.q_width, self.kv_width = d_model, n_kv_heads * self.d_head
        self.qkv_proj = PackedLinear(d_model, [self.q_width, self.kv_width, self.kv_width], bias)
        self.register_load_state_dict_pre_hook(_pack_qkv_hook)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        # The factor on q·k: None is SDPA's 1/sqrt(d_head); μP sets ~1/d_head (models/mup.py).
        self.scale: float | None = None
        self.q_norm = nn.RMSNorm(self.d_head, eps=1e-6) if qk_norm else None
        self.k_norm = nn.RMSNorm(self.d_head, eps=1e-6) if qk_norm else None
        # Rotations of q and k, or a bias on the scores (positional.AttentionPositions).
        self.positions = build_attention_positions(relative_pos, self.d_head, n_heads)
        if self.positions is not None and max_len is not None:
            self.positions.reserve(max_len)

    @classmethod
    def from_config(cls, config: ModelConfig, self_attention: bool = True) -> MultiHeadAttention:
        """Self-attention takes the config's positions; cross-attention takes none."""
        relative_pos = config.pos if self_attention else None
        return cls(
            config.d_model,
            config.n_heads,
            config.dropout,
            config.bias,
            config.n_kv_heads,
            config.qk_norm,
            relative_pos,
            config.max_len,
        )

    def qkv_weights(self) -> tuple[Tensor, Tensor, Tensor]:
        """Views of the packed weight's q (H Dh, D), k and v (Hkv Dh, D) blocks."""
        return self.qkv_proj.weights()

    def qkv_biases(self) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """Views of the packed bias's q, k and v blocks (None without biases)."""
        return self.qkv_proj.biases()

    def _project(self, x: Tensor, rows: slice) -> Tensor:
        """x (B, T, D) through the rows `rows` of the packed projection -> (B, T, rows)."""
        bias = self.qkv_proj.bias
        return F.linear(x, self.qkv_proj.weight[rows], None if bias is None else bias[rows])

    def project_q(self, query: Tensor) -> Tensor:
        """Cross-attention's queries (B, Tq, D) -> (B, Tq, H Dh)."""
        return self._project(query, slice(0, self.q_width))

    def project_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attention's keys and values, one matmul: (B, Tk, D) -> 2 x (B, Tk, Hkv Dh)."""
        kv = self._project(memory, slice(self.q_width, None))  # (B, Tk, 2 Hkv Dh)
        k, v = kv.split(self.kv_width, dim=-1)
        return k, v

    def _split_heads(self, x: Tensor) -> Tensor:
        """(B, T, H * Dh) -> (B, H, T, Dh)."""
        B, T, _ = x.shape
        return x.view(B, T, -1, self.d_head).transpose(1, 2)

    def _merge_heads(self, x: Tensor) -> Tensor:
        """(B, H, T, Dh) -> (B, T, H * Dh)."""
        B, H, T, Dh = x.shape
        return x.transpose(1, 2).reshape(B, T, H * Dh)

    def forward(
        self,
        query: Tensor,
        key_value: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        prefix_len: int = 0,
        documents: DocumentMask | None = None,
    ) -> Tensor:
        """Attend from `query` (B, Tq, D) to `key_value` (B, Tk, D), or to itself if None.

        key_padding_mask: bool (B, Tk), True at padding keys; with a self-attention cache it
        covers the cached keys too. causal: query i sees keys <= i. prefix_len (with causal):
        the first prefix_len keys are visible to every query, so a prefix attends to itself
        both ways (a prefix LM's fully visible source).
        cache: self-attention appends this call's keys and values to it, and the queries,
        at positions len(cache) + i, attend to every cached key plus the new causal ones.
        Cross-attention projects `key_value` on the first call only and then reuses the
        cached keys and values (the memory is fixed while decoding).
        documents (with causal self-attention, no cache, no prefix): packed documents; a
        query sees only keys of its own document (document_mask.py).
        """
        if key_value is None:  # self-attention: q, k and v in one matmul
            # (B, Tq, H Dh), (B, Tq, Hkv Dh) twice
            q, k, v = self.qkv_proj(query).split(self.qkv_proj.splits, dim=-1)
        else:
            q = self.project_q(query)  # (B, Tq, H Dh)
        q = self._split_heads(q)  # (B, H, Tq, Dh)
        if self.q_norm is not None:
            q = self.q_norm(q)
        past = 0  # cached self-attention steps: query i sits at position past + i
        if cache is not None and key_value is not None and len(cache) > 0:
            # Cross-attention while decoding: the memory was projected on the first step.
            k, v = cache.k, cache.v  # (B, Hkv, S, Dh)
        else:
            if key_value is not None:
                k, v = self.project_kv(key_value)  # (B, Tk, Hkv Dh) each
            k = self._split_heads(k)  # (B, Hkv, Tk, Dh)
            v = self._split_heads(v)  # (B, Hkv, Tk, Dh)
            if self.k_norm is not None:
                k = self.k_norm(k)
            if cache is not None and key_value is None:
                past = len(cache)
            if self.positions is not None:  # keys are cached already moved to their positions
                q, k = self.positions.rotate(q, k, past)
            if cache is not None:
                k, v = cache.append(k, v)  # (B, Hkv, past + Tk, Dh)
        tq, tk = q.size(-2), k.size(-2)
        bias = None  # float (H, Tq, Tk) added to the scores
        if self.positions is not None and key_value is None:
            bias = self.positions.score_bias(tq, tk, past)
            bias = None if bias is None else bias.to(q.dtype)

        allowed = None  # bool, broadcastable to (B, H, Tq, Tk); True = may attend
        if key_padding_mask is not None:
            if key_padding_mask.dtype != torch.bool:
                # ~mask on an int tensor is a bitwise not: it would silently mask nothing.
                raise TypeError(
                    f"key_padding_mask must be bool (True = pad), got {key_padding_mask.dtype}"
                )
            if key_padding_mask.shape != (q.size(0), tk):
                raise ValueError(
                    f"key_padding_mask must have shape (batch, keys) = {(q.size(0), tk)} "
                    f"(cached keys included), got {tuple(key_padding_mask.shape)}"
                )
            allowed = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, Tk)
        if documents is not None:  # packed documents: block-diagonal causal attention
            if key_value is not None or cache is not None or prefix_len > 0 or not causal:
                raise ValueError(
                    "document masking applies to causal self-attention without a KV cache or "
                    "a prefix"
                )
            if allowed is None:  # the document mask is the whole mask
                dropout_p = self.dropout if self.training else 0.0
                out = documents.attend(q, k, v, bias, dropout_p, self.scale)  # (B, H, T, Dh)
                return self.out_proj(self._merge_heads(out))  # (B, T, D)
            allowed = allowed & documents.visible  # with padding: the general path below
        explicit_causal = allowed is not None or bias is not None or prefix_len > 0
        if causal and (explicit_causal or (past > 0 and tq > 1)):
            # Query i sits at position past + i and sees keys 0..past + i. Without a cache
            # (past = 0) this is top-left aligned like SDPA's is_causal, so both paths agree.
            visible = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril(diagonal=past)
            visible[:, :prefix_len] = True
            allowed = visible if allowed is None else allowed & visible

        dropout_p = self.dropout if self.training else 0.0
        gqa = self.n_kv_heads != self.n_heads  # SDPA shares each k/v head among a query group
        if allowed is None:
            # No explicit mask lets SDPA build the causal mask itself and pick a fused kernel.
            # A single new query after cached steps sees every key: no causal mask at all.
            is_causal = causal and past == 0 and bias is None
            out = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=bias,
                dropout_p=dropout_p,
                is_causal=is_causal,
                scale=self.scale,
                enable_gqa=gqa,
            )
        else:
            # A query with no visible key (e.g. a fully padded sequence) would softmax over
            # all -inf and produce NaN, which poisons the gradients of the whole batch. Let
            # such rows attend everywhere (finite), then zero their output.
            empty = ~allowed.any(dim=-1, keepdim=True)  # (..., Tq or 1, 1)
            mask = allowed | empty
            if bias is not None:
                mask = torch.where(mask, bias, float("-inf"))  # (B or 1, H, Tq, Tk)
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=self.scale, enable_gqa=gqa
            )
            out = out.masked_fill(empty, 0.0)
        # out: (B, H, Tq, Dh)
        return self.out_proj(self._merge_heads(out))  # (B, Tq, D)


_OLD_PROJECTIONS = ("q_proj", "k_proj", "v_proj")


def pack_qkv(state_dict: dict[str, Tensor], prefix: str = "") -> None:
    """Replace, in place, separate `q_proj`, `k_proj`, `v_proj` weights and biases (attnlab's
    checkpoints before the packed projection) by the `qkv_proj` they make, concatenated in
    [q | k | v] order; prefix "" converts every attention layer of a whole state_dict."""
    suffix = "q_proj.weight"
    layers = {key[: -len(suffix)] for key in state_dict if key.endswith(suffix)}
    for layer in layers if prefix == "" else {prefix} & layers:
        for kind in ("weight", "bias"):
            old = [f"{layer}{name}.{kind}" for name in _OLD_PROJECTIONS]
            if all(key in state_dict for key in old):
                state_dict[f"{layer}qkv_proj.{kind}"] = torch.cat([state_dict.pop(k) for k in old])


def _pack_qkv_hook(
    module: nn.Module, state_dict: dict[str, Tensor], prefix: str, *_: object
) -> None:
    """load_state_dict pre-hook of MultiHeadAttention: old checkpoints load (pack_qkv)."""
    pack_qkv(state_dict, prefix)


# Where a padding mask's pads may lie: "right" (after each row's tokens) or "any".
PADDING_SIDES = ("right", "any")


def causal_padding_mask(
    padding_mask: Tensor | None, padding_side: str, cached: int = 0
) -> Tensor | None:
    """The key-padding mask causal self-attention needs over new steps after `cached` ones.

    With right padding a real query i has only real keys at 0..i, which causality alone
    already limits it to: the mask changes nothing at real positions, so none is passed, and
    SDPA can take is_causal and a fused (flash) kernel. Only the outputs at padded positions
    differ, and nothing reads those (losses ignore them, poolers skip them). With cached
    steps the mask also covers earlier keys, and is kept. Decided from `padding_side`, a
    setting: reading the mask to find out would be a host sync.
    """
    if padding_side == "right" and cached == 0:
        return None
    return padding_mask
