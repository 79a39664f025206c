"""The one place that turns (q, k, v, masks, score changes) into attention outputs.

`choose_kernel` picks, and `attend` runs, the fastest kernel that computes what was asked:
- "sdpa_causal" / "sdpa": SDPA with is_causal (or no mask at all, plus an optional additive
  bias), which lets it take a fused (flash / memory-efficient / cuDNN) kernel;
- "document": packed documents (document_mask.py), FlexAttention where that applies;
- "sdpa_masked": SDPA with a boolean (or, with a bias, additive) mask materialised from the
  mask predicates (masks.py);
- "explicit": scores written out, for score_mods (scores.py) that SDPA cannot apply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from attnlab.models.document_mask import DocumentMask
from attnlab.models.masks import MaskMod, and_masks, causal, materialize, or_masks, prefix
from attnlab.models.scores import ScoreMod, apply_score_mods

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
        visible = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~visible, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # (B, H, Tq, Tk)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v  # (B, H, Tq, Dh)


def choose_kernel(
    is_causal: bool,
    past: int,
    n_queries: int,
    mask_mods: Sequence[MaskMod] = (),
    bias: bool = False,
    score_mods: Sequence[ScoreMod] = (),
    documents: bool = False,
    prefix_len: int = 0,
) -> str:
    """The kernel `attend` runs for these inputs (see the module docstring).

    A single new query after cached steps sees every key: causality needs no mask then.
    A bias (ALiBi) with causality needs the explicit mask: SDPA takes one attn_mask.
    """
    if score_mods:
        return "explicit"
    if documents:
        return "sdpa_masked" if mask_mods else "document"
    if mask_mods or (is_causal and (bias or prefix_len > 0 or (past > 0 and n_queries > 1))):
        return "sdpa_masked"
    return "sdpa_causal" if is_causal and past == 0 else "sdpa"


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    is_causal: bool = False,
    past: int = 0,
    mask_mods: Sequence[MaskMod] = (),
    bias: Tensor | None = None,
    score_mods: Sequence[ScoreMod] = (),
    documents: DocumentMask | None = None,
    prefix_len: int = 0,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """Attention of q (B, H, Tq, Dh) at positions past.. over k, v (B, Hkv, Tk, Dh)
    -> (B, H, Tq, Dh).

    is_causal: query i sees keys <= i, and with prefix_len also the first prefix_len keys.
    mask_mods: predicates ANDed with that (and the documents' mask); bias: float
    (H, Tq, Tk) added to the scores; score_mods: applied to the scaled (and biased) scores.
    A query with no visible key gets a zero output, not NaN.
    """
    prefix_len = prefix_len if is_causal else 0
    has_bias, has_documents = bias is not None, documents is not None
    kernel = choose_kernel(
        is_causal, past, q.size(-2), mask_mods, has_bias, score_mods, has_documents, prefix_len
    )
    gqa = k.size(1) != q.size(1)  # SDPA shares each k/v head among a query group
    if kernel == "document":
        assert documents is not None
        return documents.attend(q, k, v, bias, dropout_p, scale)
    if kernel in ("sdpa", "sdpa_causal"):
        return F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=bias,
            dropout_p=dropout_p,
            is_causal=kernel == "sdpa_causal",
            scale=scale,
            enable_gqa=gqa,
        )
    if is_causal:  # the causal part: a prefix LM's source is visible both ways
        mask_mods = [or_masks(causal, prefix(prefix_len)) if prefix_len else causal, *mask_mods]
    allowed = _allowed(q, k.size(-2), past, mask_mods, documents)
    # A query with no visible key (e.g. a fully padded sequence) would softmax over all -inf
    # and produce NaN, which poisons the gradients of the whole batch. Let such rows attend
    # everywhere (finite), then zero their output.
    empty = ~allowed.any(dim=-1, keepdim=True)  # (..., Tq or 1, 1)
    mask = allowed | empty
    if kernel == "explicit":
        out = _explicit(q, k, v, mask, bias, score_mods, past, dropout_p, scale)
    else:
        if bias is not None:
            mask = torch.where(mask, bias, float("-inf"))  # (B or 1, H, Tq, Tk)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale, enable_gqa=gqa
        )
    return out.masked_fill(empty, 0.0)


def _allowed(
    q: Tensor,
    n_keys: int,
    past: int,
    mods: Sequence[MaskMod],
    documents: DocumentMask | None,
) -> Tensor:
    """bool, broadcastable to (B, H, Tq, Tk): what the predicates (and documents) allow."""
    B, H, Tq, _ = q.shape
    queries = torch.arange(past, past + Tq, device=q.device)  # (Tq,) absolute positions
    if mods:
        allowed = materialize(and_masks(*mods), B, H, queries, n_keys)
        while allowed.dim() > 2 and allowed.size(0) == 1:  # (1, 1, Tq, Tk) -> (Tq, Tk):
            allowed = allowed[0]  # SDPA's kernels pick by the mask's shape, keep it minimal
    else:
        allowed = torch.ones(1, 1, Tq, n_keys, dtype=torch.bool, device=q.device)
    if documents is not None:
        allowed = allowed & documents.visible  # (B, 1, T, T)
    return allowed


def _explicit(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor,
    bias: Tensor | None,
    score_mods: Sequence[ScoreMod],
    past: int,
    dropout_p: float,
    scale: float | None,
) -> Tensor:
    """softmax(score_mods(q k^T * scale + bias), masked) v, written out."""
    if k.size(1) != q.size(1):  # grouped-query attention: each k/v head serves a group
        group = q.size(1) // k.size(1)
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    if scale is None:
        scale = 1.0 / math.sqrt(q.size(-1))
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, H, Tq, Tk)
    if bias is not None:
        scores = scores + bias
    scores = apply_score_mods(scores, score_mods, past)
    weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights.to(v.dtype) @ v  # (B, H, Tq, Dh)
