"""Position-wise feed-forward network."""

from __future__ import annotations

from torch import Tensor, nn

# The one place that maps activation names to modules.
_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU}


def build_activation(name: str) -> nn.Module:
    """Activation module by name: "relu" or "gelu" (exact, not the tanh approximation)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {list(_ACTIVATIONS)}")
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
