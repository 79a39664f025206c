"""Position-wise feed-forward networks: plain (ReLU, GELU) and gated (SwiGLU)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.models.checks import check_choice

# The one place that maps activation names to modules; "swiglu" is a gated network of its own.
# "gelu" is exact (BERT's), "gelu_tanh" the tanh approximation GPT-2 was trained with.
_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "gelu_tanh": partial(nn.GELU, approximate="tanh"),
}
FEEDFORWARD_KINDS = (*_ACTIVATIONS, "swiglu")


def build_activation(name: str) -> nn.Module:
    """Activation module by name: "relu", "gelu" (exact) or "gelu_tanh" (approximate)."""
    check_choice("activation", name, _ACTIVATIONS)
    return _ACTIVATIONS[name]()


class FeedForward(nn.Module):
    """linear1 -> activation -> dropout -> linear2, applied to each position independently."""

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        activation: str = "relu",
        dropout: float = 0.0,
        bias: bool = True,
    ):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff, bias=bias)
        self.activation = build_activation(activation)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, T, D)."""
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


def swiglu_hidden_size(d_ff: int) -> int:
    """2/3 of a plain network's hidden size: three matrices then hold as many weights as two."""
    return round(2 * d_ff / 3)


class SwiGLUFeedForward(nn.Module):
    """linear2(dropout(silu(gate(x)) * linear1(x))) (Shazeer, 2020), as in PaLM and Llama.

    `d_ff` is the hidden size of the plain network this one stands in for; the gated hidden
    size is 2/3 of it (swiglu_hidden_size), so parameter counts stay comparable.
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        hidden = swiglu_hidden_size(d_ff)
        self.linear1 = nn.Linear(d_model, hidden, bias=bias)
        self.gate = nn.Linear(d_model, hidden, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(hidden, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, T, D)."""
        return self.linear2(self.dropout(F.silu(self.gate(x)) * self.linear1(x)))


def build_feedforward(
    kind: str, d_model: int, d_ff: int, dropout: float = 0.0, bias: bool = True
) -> nn.Module:
    """Feed-forward network by activation name: "relu", "gelu", "gelu_tanh" or "swiglu"."""
    if kind == "swiglu":
        return SwiGLUFeedForward(d_model, d_ff, dropout, bias)
    check_choice("activation", kind, FEEDFORWARD_KINDS)
    return FeedForward(d_model, d_ff, kind, dropout, bias)
