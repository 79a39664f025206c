"""Multi-head attention: projections, positions and the KV cache; the kernel is chosen in
attention_kernels.py, the masks and score changes come from masks.py and scores.py."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.models.attention_kernels import (
    DECODING_KERNELS,
    attend,
    attention_reference,
    decoding_kernels,
)
from attnlab.models.attention_variants import active_mods
from attnlab.models.config import ModelConfig
from attnlab.models.document_mask import DocumentMask
from attnlab.models.kv_cache import KVCache
from attnlab.models.masks import MaskMod, padding, sliding_window
from attnlab.models.packed import PackedLinear, pack_qkv, pack_qkv_hook
from attnlab.models.position_schemes import build_attention_positions
from attnlab.models.scores import ScoreMod, softcap

__all__ = [
    "DECODING_KERNELS",
    "PADDING_SIDES",
    "MultiHeadAttention",
    "PackedLinear",
    "attention_reference",
    "causal_padding_mask",
    "decoding_kernels",
    "pack_qkv",
]


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al., 2017), self- or cross-attention, of one layer.

    Q, K and V come from one packed projection `qkv_proj` (a PackedLinear), d_model ->
    (H + 2 Hkv) Dh, whose weight rows are [q (H Dh) | k (Hkv Dh) | v (Hkv Dh)], each block a
    d_model -> width map with fan-in d_model (nn.MultiheadAttention's in_proj_weight layout
    when Hkv = H; `qkv_weights()` gives the blocks as views). Self-attention runs one matmul
    for the three; cross-attention one for q (from the query) and one for k and v (from the
    memory). Checkpoints with separate q_proj, k_proj, v_proj load too (`pack_qkv`).

    From `config`: n_kv_heads (grouped-query attention, each k/v head serving n_heads /
    n_kv_heads query heads), qk_norm (RMSNorm over each head's q and k, as in OLMo 2), the
    position scheme `pos` where it acts inside attention (RoPE rotates q and k, ALiBi biases
    the scores; self-attention only: positions across two sequences mean nothing), the
    sliding window of layer `layer` (`config.window_of`; self-attention only), soft-capping
    (all attention) and the active registered variants (attention_variants.py; self-attention).
    """

    def __init__(
        self,
        config: ModelConfig,
        self_attention: bool = True,
        layer: int = 0,
    ):
        super().__init__()
        d_model, n_heads, n_kv_heads = config.d_model, config.n_heads, config.n_kv_heads
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        self.d_model, self.n_heads, self.n_kv_heads = d_model, n_heads, n_kv_heads
        self.d_head = d_model // n_heads
        self.dropout = config.dropout
        self.q_width, self.kv_width = d_model, n_kv_heads * self.d_head
        widths = [self.q_width, self.kv_width, self.kv_width]
        self.qkv_proj = PackedLinear(d_model, widths, config.bias)
        self.register_load_state_dict_pre_hook(pack_qkv_hook)
        self.out_proj = nn.Linear(d_model, d_model, bias=config.bias)
        # The factor on q·k: None is SDPA's 1/sqrt(d_head); μP sets ~1/d_head (models/mup.py).
        self.scale: float | None = None
        self.q_norm = nn.RMSNorm(self.d_head, eps=1e-6) if config.qk_norm else None
        self.k_norm = nn.RMSNorm(self.d_head, eps=1e-6) if config.qk_norm else None
        # Rotations of q and k, or a bias on the scores (positional.AttentionPositions).
        relative_pos = config.pos if self_attention else None
        self.positions = build_attention_positions(relative_pos, self.d_head, n_heads)
        if self.positions is not None:
            self.positions.reserve(config.max_len)
        # What this layer changes about which keys are seen and how scores count.
        self.window = config.window_of(layer) if self_attention else None
        masks, scores = active_mods(config.variant_values) if self_attention else ([], [])
        self.mask_mods: list[MaskMod] = masks
        cap = config.attn_softcap
        self.score_mods: list[ScoreMod] = ([] if cap is None else [softcap(cap)]) + scores

    @classmethod
    def from_config(cls, config: ModelConfig, self_attention: bool = True) -> MultiHeadAttention:
        """Self-attention takes the config's positions; cross-attention takes none."""
        return cls(config, self_attention)

    @classmethod
    def from_arguments(
        cls,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        n_kv_heads: int | None = None,
        qk_norm: bool = False,
        relative_pos: str | None = None,
        max_len: int | None = None,
    ) -> MultiHeadAttention:
        """The flat form: relative_pos None (or an embedding-side scheme) acts nowhere here."""
        return cls(
            flat_config(
                d_model=d_model,
                n_heads=n_heads,
                dropout=dropout,
                bias=bias,
                n_kv_heads=n_kv_heads,
                qk_norm=qk_norm,
                relative_pos=relative_pos,
                max_len=max_len,
            )
        )

    @property
    def needs_explicit_mask(self) -> bool:
        """Whether this layer's masks or scores go beyond causality, padding and documents."""
        return bool(self.window is not None or self.mask_mods or self.score_mods)

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

    def _qkv(
        self, query: Tensor, key_value: Tensor | None, cache: KVCache | None
    ) -> tuple[Tensor, Tensor, Tensor, int]:
        """q (B, H, Tq, Dh), k and v (B, Hkv, Tk, Dh) with positions applied and the cache
        appended to, and `past`: the cached self-attention steps (query i sits at past + i)."""
        if key_value is None:  # self-attention: q, k and v in one matmul
            q, k, v = self.qkv_proj(query).split(self.qkv_proj.splits, dim=-1)
        else:
            q = self.project_q(query)  # (B, Tq, H Dh)
        q = self._split_heads(q)  # (B, H, Tq, Dh)
        if self.q_norm is not None:
            q = self.q_norm(q)
        if cache is not None and key_value is not None and len(cache) > 0:
            # Cross-attention while decoding: the memory was projected on the first step.
            return q, cache.k, cache.v, 0
        if key_value is not None:
            k, v = self.project_kv(key_value)  # (B, Tk, Hkv Dh) each
        k, v = self._split_heads(k), self._split_heads(v)  # (B, Hkv, Tk, Dh)
        if self.k_norm is not None:
            k = self.k_norm(k)
        past = len(cache) if cache is not None and key_value is None else 0
        if self.positions is not None:  # keys are cached already moved to their positions
            q, k = self.positions.rotate(q, k, past)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, Hkv, past + Tk, Dh)
        return q, k, v, past

    def _mask_mods(
        self, key_padding_mask: Tensor | None, shape: tuple[int, int], causal: bool
    ) -> list[MaskMod]:
        """The predicates beyond causality and a prefix: padding, the window, the variants."""
        mods = []
        if key_padding_mask is not None:
            check_padding_mask(key_padding_mask, shape)
            mods.append(padding(key_padding_mask))
        if self.window is not None:
            mods.append(sliding_window(self.window, causal))
        return mods + self.mask_mods

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
        self_attention = key_value is None
        q, k, v, past = self._qkv(query, key_value, cache)
        tq, tk = q.size(-2), k.size(-2)
        if documents is not None and (
            not self_attention or cache is not None or prefix_len > 0 or not causal
        ):
            raise ValueError(
                "document masking applies to causal self-attention without a KV cache or a prefix"
            )
        bias = None  # float (H, Tq, Tk) added to the scores
        if self.positions is not None and self_attention:
            bias = self.positions.score_bias(tq, tk, past)
            bias = None if bias is None else bias.to(q.dtype)
        mask_mods = self._mask_mods(key_padding_mask, (q.size(0), tk), causal)
        out = attend(
            q,
            k,
            v,
            is_causal=causal,
            past=past,
            mask_mods=mask_mods,
            bias=bias,
            score_mods=self.score_mods,
            documents=documents,
            prefix_len=prefix_len,
            dropout_p=self.dropout if self.training else 0.0,
            scale=self.scale,
        )  # (B, H, Tq, Dh)
        return self.out_proj(self._merge_heads(out))  # (B, Tq, D)


def flat_config(**values: Any) -> ModelConfig:
    """A ModelConfig for the flat constructors of single modules, which take any dropout
    nn.Dropout takes (1.0 included, which a run's config refuses). relative_pos None: no
    positions in attention; max_len None: none reserved."""
    values["pos"] = values.pop("relative_pos", None) or "none"
    values["max_len"] = values.pop("max_len", None) or 1
    dropout = values.pop("dropout")
    config = ModelConfig(**values)  # type: ignore[arg-type]
    object.__setattr__(config, "dropout", dropout)  # frozen; valid for a single module
    return config


def check_padding_mask(key_padding_mask: Tensor, shape: tuple[int, int]) -> None:
    """A bool (B, Tk) mask; an int one would be inverted bitwise and mask nothing."""
    if key_padding_mask.dtype != torch.bool:
        raise TypeError(f"key_padding_mask must be bool (True = pad), got {key_padding_mask.dtype}")
    if tuple(key_padding_mask.shape) != shape:
        raise ValueError(
            f"key_padding_mask must have shape (batch, keys) = {shape} "
            f"(cached keys included), got {tuple(key_padding_mask.shape)}"
        )


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
