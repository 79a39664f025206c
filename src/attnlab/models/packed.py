"""The packed q/k/v projection and the conversion of checkpoints from before it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


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


def pack_qkv_hook(
    module: nn.Module, state_dict: dict[str, Tensor], prefix: str, *_: object
) -> None:
    """load_state_dict pre-hook of MultiHeadAttention: old checkpoints load (pack_qkv)."""
    pack_qkv(state_dict, prefix)
