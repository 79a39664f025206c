"""The settings every Transformer block shares, in one frozen object that checks itself once.

Every error is one line that names the key as the `model` config group spells it, the value,
and what is valid: `model.n_heads=3 is not valid: d_model (32) must be divisible by ...`.
The networks build a ModelConfig from their keyword arguments (which Hydra passes from
conf/model/*.yaml), and `utils/config_checks.py` runs the same checks before any work.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from attnlab.models.checks import check_choice, check_heads, check_positive, invalid
from attnlab.models.feedforward import FEEDFORWARD_KINDS
from attnlab.models.norms import NORM_KINDS
from attnlab.models.position_schemes import POSITION_SCHEMES, position_scheme


@dataclass(frozen=True)
class ModelConfig:
    """Width, heads, feed-forward, norms, dropout and positions of every block of a network.

    d_ff None means 4 * d_model. n_kv_heads None means n_heads (no grouped-query attention).
    pos names a position scheme of `position_schemes.POSITION_SCHEMES`.
    """

    d_model: int = 128
    n_heads: int = 4
    n_kv_heads: int | None = None
    d_ff: int | None = None
    activation: str = "gelu"
    norm: str = "layernorm"
    norm_first: bool = True
    layer_norm_eps: float = 1e-5
    bias: bool = True
    qk_norm: bool = False
    dropout: float = 0.0
    pos: str = "learned"
    max_len: int = 256

    def __post_init__(self) -> None:
        for key in ("d_model", "max_len", "layer_norm_eps"):
            check_positive(key, getattr(self, key))
        if self.d_ff is not None:
            check_positive("d_ff", self.d_ff)
        check_heads(self.d_model, self.n_heads, self.n_kv_heads)
        if not 0 <= self.dropout < 1:
            raise invalid("dropout", self.dropout, "must be a probability in [0, 1)")
        check_choice("activation", self.activation, FEEDFORWARD_KINDS)
        check_choice("norm", self.norm, NORM_KINDS)
        position_scheme(self.pos)  # raises, listing the schemes, on an unknown name
        if self.d_ff is None:  # frozen: set the resolved default once, here
            object.__setattr__(self, "d_ff", 4 * self.d_model)

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def require_positions(self) -> None:
        """Refuse a scheme that gives no word order (for networks with an encoder)."""
        if not position_scheme(self.pos).gives_order:
            ordered = [name for name, s in POSITION_SCHEMES.items() if s.gives_order]
            raise invalid(
                "pos",
                self.pos,
                f"pos={self.pos!r} is for decoder-only models: without positions an encoder "
                f"cannot tell word order; choose one of {ordered}",
            )

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> ModelConfig:
        """The ModelConfig of a network's keyword arguments (other arguments are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in arguments.items() if k in names})


def with_defaults(network_cls: type, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """`arguments` of `network_cls(...)` completed by its constructor's defaults; names that
    are no parameter of it (e.g. `self` from a constructor's locals()) are dropped."""
    parameters = inspect.signature(network_cls).parameters
    defaults = {
        name: p.default
        for name, p in parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    return defaults | {k: v for k, v in arguments.items() if k in parameters}


class ConfiguredNetwork:
    """Mixin of a network built from keyword arguments that hold a ModelConfig.

    `check_arguments` validates them all (the ModelConfig and the network's own arguments)
    without building anything: the constructor calls it first, and `utils/config_checks.py`
    calls it on the `model` config before any work.
    """

    @classmethod
    def check_arguments(cls, arguments: Mapping[str, Any]) -> ModelConfig:
        """The ModelConfig of `arguments` (missing ones take the constructor's defaults);
        raises ValueError, naming the key, on a bad value."""
        values = with_defaults(cls, arguments)
        config = ModelConfig.from_arguments(values)
        cls.check_own_arguments(values, config)
        return config

    @classmethod
    def check_own_arguments(cls, values: Mapping[str, Any], config: ModelConfig) -> None:
        """The network's checks beyond the ModelConfig's; vocab_size may be None (unknown
        before the data is built)."""
