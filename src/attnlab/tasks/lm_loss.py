"""The loss of a vocabulary readout, three ways (`task.loss_impl`):

- dense: logits (B, T, V) from the network, then F.cross_entropy (the reference);
- chunked: linear_cross_entropy.py, from the hidden states and the head's weight without the
  logits (plain torch, any device);
- liger: Liger-Kernel's LigerFusedLinearCrossEntropyLoss (Triton kernels: CUDA only), the
  better-kept fused kernel where it is installed.

chunked and liger need a network that exposes its hidden states and head (protocols.LMReadout).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from torch import Tensor

from attnlab.tasks.linear_cross_entropy import IGNORE_INDEX, chunked_linear_cross_entropy

LOSS_IMPLS = ("dense", "chunked", "liger")


def check_loss_impl(loss_impl: str, label_smoothing: float = 0.0) -> None:
    """One line naming the key and the valid values, before anything is built."""
    if loss_impl not in LOSS_IMPLS:
        raise ValueError(
            f"task.loss_impl={loss_impl!r} is not valid: choose from {', '.join(LOSS_IMPLS)}"
        )
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"task.label_smoothing={label_smoothing!r} is not valid: use 0 <= it < 1")
    if loss_impl != "liger":
        return
    if importlib.util.find_spec("liger_kernel") is None:
        raise ValueError(
            "task.loss_impl=liger needs Liger-Kernel (pip install liger-kernel), which is not "
            "installed: use task.loss_impl=chunked (the same loss in plain torch)"
        )
    if not torch.cuda.is_available():
        raise ValueError(
            "task.loss_impl=liger needs a CUDA GPU: Liger-Kernel's fused linear cross-entropy "
            "is a Triton kernel; use task.loss_impl=chunked on this machine"
        )


class ReadoutLoss:
    """Mean cross-entropy of `head(hidden)` against labels, by `loss_impl` (not dense).

    head: an LMHead (models/heads.py): `weight` (R, D), `bias` or None, `vocab_size` V <= R
    (rows past V are a padded vocabulary's), `output_mult` (μP's readout multiplier).
    """

    def __init__(
        self, loss_impl: str, label_smoothing: float = 0.0, chunk_tokens: int | None = None
    ) -> None:
        self.loss_impl, self.label_smoothing, self.chunk_tokens = (
            loss_impl,
            label_smoothing,
            chunk_tokens,
        )
        self._liger: Any = None

    def __call__(self, head: Any, hidden: Tensor, labels: Tensor) -> Tensor:
        """hidden (B, T, D), labels (B, T) -> the scalar mean loss over scored tokens."""
        mult = float(getattr(head, "output_mult", 1.0))
        V = head.vocab_size
        if self.loss_impl == "chunked":
            return chunked_linear_cross_entropy(
                hidden,
                head.weight,
                labels,
                bias=head.bias,
                vocab_size=V,
                output_mult=mult,
                label_smoothing=self.label_smoothing,
                chunk_tokens=self.chunk_tokens,
            )
        if self._liger is None:
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

            self._liger = LigerFusedLinearCrossEntropyLoss(
                ignore_index=IGNORE_INDEX, label_smoothing=self.label_smoothing
            )
        x = hidden.reshape(-1, hidden.size(-1))  # (N, D)
        if mult != 1.0:
            x = x * mult
        # weight[:V]: the leading rows of a contiguous matrix, a contiguous view
        weight, bias = head.weight[:V], None if head.bias is None else head.bias[:V]
        device = x.device.type
        if torch.is_autocast_enabled(device):  # the kernel takes one dtype: autocast's
            dtype = torch.get_autocast_dtype(device)
            x, weight = x.to(dtype), weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
        return self._liger(weight, x, labels.reshape(-1), bias)
