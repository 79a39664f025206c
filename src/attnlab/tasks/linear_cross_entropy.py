"""Cross-entropy of a linear readout without its (N, V) logits: `task.loss_impl=chunked`.

The dense loss writes the logits (B, T, V), their fp32 upcast and their gradient: at GPT-2's
vocabulary and batch 32 x 1024 that is about 6.6 GB in bf16, read and written again by the
backward. Here the tokens go through the head in chunks: each chunk's logits (n, V) live
only while its loss and its gradients (towards the hidden states and the head's weight) are
computed, in the forward; the backward only scales the stored gradients (N, D) and (R, D) by
the incoming one. The matmuls are the dense path's (logits, grad of the input, grad of the
weight), so the FLOPs are the same; the peak memory drops from O(N V) to O(n V + N D + R D).
This is the scheme of Liger-Kernel's fused linear cross-entropy, in plain torch ops.

Numerics follow the dense path under autocast: the matmuls run in the compute dtype (the
autocast dtype, else the inputs'), the softmax and the loss in fp32, the weight's gradient is
accumulated in fp32 over the chunks.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

IGNORE_INDEX = -100


MIN_CHUNK = 1024


def auto_chunk(tokens: int, vocab_size: int, d_model: int) -> int:
    """Tokens per chunk: such that a chunk's logits (n, V) take no more room than the hidden
    states (N, D), n = N / ceil(V / D) (Liger's rule), but at least MIN_CHUNK (or all N): each
    chunk adds a (V, D) product into the weight's gradient, and many thin chunks would read
    and write it more often than the matmuls take (3.7x dense's time on a CPU at n = 63)."""
    return min(tokens, max(MIN_CHUNK, math.ceil(tokens / math.ceil(vocab_size / d_model))))


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: Tensor,  # (N, D)
        weight: Tensor,  # (R, D), R >= vocab_size rows (padded vocabulary)
        bias: Tensor | None,  # (R,)
        labels: Tensor,  # (N,), ignore_index where not scored
        vocab_size: int,
        output_mult: float,
        ignore_index: int,
        label_smoothing: float,
        chunk: int,
        dtype: torch.dtype,  # the matmuls' dtype
    ) -> Tensor:
        V, eps = vocab_size, label_smoothing
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        w = weight[:V].to(dtype)  # (V, D): padded rows take no part
        b = None if bias is None else bias[:V].to(dtype)
        keep = labels != ignore_index  # (N,)
        count = keep.sum()
        # The gradient of a mean over `count` tokens (0 tokens: the loss is NaN, as dense).
        row_scale = keep.float() / count.clamp(min=1)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        grad_b = torch.zeros_like(bias, dtype=torch.float32) if need_b else None
        total = hidden.new_zeros((), dtype=torch.float32)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, hidden.size(0), chunk):
                rows = slice(start, start + chunk)
                x = (hidden[rows] * output_mult).to(dtype)  # (n, D)
                z = (x @ w.T if b is None else torch.addmm(b, x, w.T)).float()  # (n, V)
                y = torch.where(keep[rows], labels[rows], 0)[:, None]  # (n, 1)
                lse = z.logsumexp(-1, keepdim=True)  # (n, 1)
                loss = lse - z.gather(1, y)  # -log p(y)
                if eps:  # smoothing: mean of -log p over the vocabulary
                    loss = (1 - eps) * loss + eps * (lse - z.mean(-1, keepdim=True))
                total = total + (loss.squeeze(1) * keep[rows]).sum()
                if not (need_h or need_w or need_b):
                    continue
                # d loss / d z = softmax - (1 - eps) onehot(y) - eps / V, per token scored
                g = z.sub_(lse).exp_()  # in place: one (n, V) buffer
                g.scatter_add_(1, y, torch.full_like(y, -(1 - eps), dtype=g.dtype))
                if eps:
                    g.sub_(eps / V)
                g.mul_(row_scale[rows, None])
                g_c = g.to(dtype)
                if need_h:
                    grad_h[rows] = ((g_c @ w) * output_mult).to(hidden.dtype)
                if need_w:  # fp32: accumulated in place; else the product, added in fp32
                    if dtype == torch.float32:
                        grad_w[:V].addmm_(g_c.T, x)
                    else:
                        grad_w[:V].add_(g_c.T @ x)
                if need_b:
                    grad_b[:V].add_(g_c.sum(0))
        ctx.save_for_backward(
            *(t if t is not None else torch.empty(0) for t in (grad_h, grad_w, grad_b))
        )
        ctx.needs = (need_h, need_w, need_b)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total / count

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        grad_h, grad_w, grad_b = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs
        w_dtype, b_dtype = ctx.dtypes
        return (
            grad_h * grad_out.to(grad_h.dtype) if need_h else None,
            (grad_w * grad_out).to(w_dtype) if need_w else None,
            (grad_b * grad_out).to(b_dtype) if need_b else None,
            *([None] * 7),
        )


def chunked_linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    *,
    bias: Tensor | None = None,
    vocab_size: int | None = None,
    output_mult: float = 1.0,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
    chunk_tokens: int | None = None,
) -> Tensor:
    """Mean cross-entropy of `(hidden * output_mult) @ weight[:V].T (+ bias[:V])` against
    labels, as F.cross_entropy(logits, labels, ignore_index, label_smoothing) gives it, with
    its gradients for hidden, weight and bias, without the (N, V) logits.

    hidden: (..., D); labels: (...); weight: (R, D) with R >= vocab_size (null: R), the rows
    past it (a padded vocabulary) excluded from the softmax and given zero gradient; a tied
    weight (the embedding) gets its gradient like any other. chunk_tokens: tokens per chunk
    (null: `auto_chunk`).
    """
    hidden = hidden.reshape(-1, hidden.size(-1))  # (N, D)
    labels = labels.reshape(-1)  # (N,)
    V = weight.size(0) if vocab_size is None else vocab_size
    chunk = chunk_tokens or auto_chunk(hidden.size(0), V, hidden.size(1))
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
    else:
        dtype = torch.promote_types(hidden.dtype, weight.dtype)
    return _ChunkedLinearCrossEntropy.apply(
        hidden, weight, bias, labels, V, output_mult, ignore_index, label_smoothing, chunk, dtype
    )
