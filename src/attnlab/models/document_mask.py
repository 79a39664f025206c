"""Packed documents: attention that stays inside each document of a training window.

A causal-LM window spans documents, each one opened by EOS (which doubles as its BOS). With
`data.document_mask=true` a batch carries `document_ids` (B, T), `cumsum(input_ids == eos)`:
every token of one document shares an id, and the ids of a row never decrease. A token then
attends only to earlier-or-equal tokens of its own document (block-diagonal causal), and its
position is its offset from its document's first token in the window, so each document is
computed as if it were run alone.

Positions: learned and sinusoidal embeddings are looked up at those per-document positions.
RoPE and ALiBi need nothing: they depend on the distance between query and key only, which
is the same inside a document whichever column it starts at.

Two ways to mask, with the same result:
- FlexAttention (torch.nn.attention.flex_attention) with a BlockMask, which skips the blocks
  that cross documents. It is a fused kernel only under torch.compile (eager, it materialises
  the scores), and its backward runs on CUDA only (CPU flex is inference-only in torch 2.13),
  so it is used on CUDA while compiling (the BlockMask is built inside the compiled graph);
- an explicit boolean mask (B, 1, T, T) for SDPA everywhere else (on CUDA, eager, SDPA's
  memory-efficient kernel takes it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention


def document_positions(document_ids: Tensor) -> Tensor:
    """Each token's offset from the first token of its document in the window (B, T).

    The first, partial document of a window starts at 0 too.
    """
    T = document_ids.size(-1)
    columns = torch.arange(T, device=document_ids.device)  # (T,)
    starts = torch.ones_like(document_ids, dtype=torch.bool)  # (B, T): a document opens here
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    first = torch.where(starts, columns, 0).cummax(dim=-1).values  # (B, T): its first column
    return columns - first


def flex_applies(document_ids: Tensor) -> bool:
    """FlexAttention where it is fused and can backpropagate: CUDA, inside torch.compile."""
    return document_ids.is_cuda and torch.compiler.is_compiling()


class DocumentMask:
    """The mask of one packed batch, built once per forward and shared by every layer.

    document_ids: integer (B, T), nondecreasing along each row (the batch contract above).
    flex: use FlexAttention (a BlockMask) rather than the explicit mask; None decides by
    `flex_applies`. FlexAttention takes no attention dropout and no padding mask.
    """

    def __init__(self, document_ids: Tensor, flex: bool | None = None) -> None:
        check_document_ids(document_ids)
        if flex is None:
            flex = flex_applies(document_ids)
        self.document_ids = document_ids  # (B, T)
        self.block_mask: BlockMask | None = None
        self._visible: Tensor | None = None
        B, T = document_ids.shape
        if flex:
            ids = document_ids

            def mask_mod(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
                return (ids[b, q] == ids[b, kv]) & (q >= kv)

            self.block_mask = create_block_mask(mask_mod, B, None, T, T, device=ids.device)
        else:
            same = document_ids[:, None, :, None] == document_ids[:, None, None, :]
            causal = torch.ones(T, T, dtype=torch.bool, device=document_ids.device).tril()
            self._visible = same & causal  # (B, 1, T, T); every query sees at least itself

    @property
    def visible(self) -> Tensor:
        """bool (B, 1, T, T), True where a query may attend: same document, not later."""
        if self._visible is None:
            raise ValueError(
                "this DocumentMask was built for FlexAttention, which takes no padding mask; "
                "build it with flex=False"
            )
        return self._visible

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        bias: Tensor | None = None,
        dropout_p: float = 0.0,
        scale: float | None = None,
    ) -> Tensor:
        """Block-diagonal causal attention: q (B, H, T, Dh), k, v (B, Hkv, T, Dh) -> (B, H, T, Dh).

        bias: float (H, T, T) added to the scores (ALiBi), or None. scale: the factor on q·k
        (None: 1/sqrt(Dh)). Query heads share each
        key/value head in groups (grouped-query attention) when Hkv < H.
        """
        gqa = q.size(1) != k.size(1)
        if self.block_mask is None:
            mask = self.visible  # no empty rows: SDPA needs no guard against NaN here
            if bias is not None:
                mask = torch.where(mask, bias, float("-inf"))  # (B, H, T, T)
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale, enable_gqa=gqa
            )
        if dropout_p > 0:
            raise ValueError("FlexAttention has no attention dropout; build with flex=False")
        score_mod = None
        if bias is not None:

            def score_mod(score: Tensor, b: Tensor, h: Tensor, qi: Tensor, kv: Tensor) -> Tensor:
                return score + bias[h, qi, kv]

        out = flex_attention(
            q, k, v, score_mod=score_mod, block_mask=self.block_mask, scale=scale, enable_gqa=gqa
        )
        assert isinstance(out, Tensor)  # no auxiliary outputs were asked for
        return out


def check_document_ids(document_ids: Tensor, tokens: Tensor | None = None) -> None:
    """Refuse document_ids that are not an integer (B, T) tensor shaped like the tokens.

    Checks shapes and dtypes only: reading the values would stall a GPU step.
    """
    if document_ids.dtype.is_floating_point or document_ids.dtype == torch.bool:
        raise TypeError(f"document_ids must be an integer tensor, got {document_ids.dtype}")
    if document_ids.dim() != 2:
        raise ValueError(
            f"document_ids must have shape (batch, time), got {tuple(document_ids.shape)}"
        )
    if tokens is not None and document_ids.shape != tokens.shape:
        raise ValueError(
            f"document_ids must have the shape of the tokens {tuple(tokens.shape)}, "
            f"got {tuple(document_ids.shape)}"
        )
