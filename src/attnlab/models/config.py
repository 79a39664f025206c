"""The settings every Transformer block shares, in one frozen object that checks itself once.

Every error is one line that names the key as the `model` config group spells it, the value,
and what is valid: `model.n_heads=3 is not valid: d_model (32) must be divisible by ...`.
The networks build a ModelConfig from their keyword arguments (which Hydra passes from
conf/model/*.yaml), and `run/value_checks.py` runs the same checks before any work.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from attnlab.models.attention_variants import (
    RESERVED_KEYS,
    check_variant_settings,
    variant_settings,
)
from attnlab.models.checks import check_choice, check_heads, check_positive, invalid
from attnlab.models.feedforward import FEEDFORWARD_KINDS
from attnlab.models.norms import NORM_KINDS
from attnlab.models.position_schemes import POSITION_SCHEMES, position_scheme

PARAMETRIZATIONS = ("sp", "mup")  # standard, or μP (models/mup.py)


@dataclass(frozen=True)
class ModelConfig:
    """Width, heads, feed-forward, norms, dropout and positions of every block of a network.

    d_ff None means 4 * d_model. n_kv_heads None means n_heads (no grouped-query attention).
    pos names a position scheme of `position_schemes.POSITION_SCHEMES`.
    vocab_pad_multiple: embedding tables and output projections get rows up to the next
    multiple of it (64: GPT-2's 50257 -> 50304, a faster matmul on GPUs); logits keep the real
    vocabulary (the head drops the padded columns), so no padded id is ever predicted.
    parametrization: "sp" (standard) or "mup" (Yang et al., 2022; see models/mup.py), which
    scales initialisation, attention, output logits and learning rates by the width ratio
    d_model / mup_base_width, so hyperparameters tuned at mup_base_width transfer.
    mup_base_d_head: the base width of a head; None: mup_base_width / n_heads (the heads
    get wider with d_model; set it when a ladder adds heads of a fixed width instead).
    attn_window: sliding-window self-attention over the last W positions (causal) or within
    distance < W (encoders); attn_global_every: every k-th layer attends globally (`window_of`).
    attn_softcap: scores -> cap * tanh(scores / cap) (Gemma 2), in every attention layer.
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
    vocab_pad_multiple: int = 1
    parametrization: str = "sp"
    mup_base_width: int | None = None
    mup_base_d_head: int | None = None
    attn_window: int | None = None
    attn_global_every: int | None = None
    attn_softcap: float | None = None
    # (key, value) of the settings of registered attention variants (attention_variants.py)
    attn_settings: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        for key, hint in typing.get_type_hints(ModelConfig).items():
            if key != "attn_settings":
                _check_type(key, getattr(self, key), hint)
        for key in ("d_model", "max_len", "layer_norm_eps", "vocab_pad_multiple"):
            check_positive(key, getattr(self, key))
        if self.d_ff is not None:
            check_positive("d_ff", self.d_ff)
        check_heads(self.d_model, self.n_heads, self.n_kv_heads)
        if not 0 <= self.dropout < 1:
            raise invalid("dropout", self.dropout, "must be a probability in [0, 1)")
        check_choice("activation", self.activation, FEEDFORWARD_KINDS)
        check_choice("norm", self.norm, NORM_KINDS)
        position_scheme(self.pos)  # raises, listing the schemes, on an unknown name
        self._check_parametrization()
        for key in ("attn_window", "attn_global_every", "attn_softcap"):
            if getattr(self, key) is not None:
                check_positive(key, getattr(self, key))
        check_variant_settings(self.variant_values)
        if self.d_ff is None:  # frozen: set the resolved default once, here
            object.__setattr__(self, "d_ff", 4 * self.d_model)

    def _check_parametrization(self) -> None:
        check_choice("parametrization", self.parametrization, PARAMETRIZATIONS)
        for key in ("mup_base_width", "mup_base_d_head"):
            if getattr(self, key) is not None:
                check_positive(key, getattr(self, key))
        if self.parametrization == "mup" and self.mup_base_width is None:
            raise invalid(
                "mup_base_width",
                None,
                "parametrization=mup needs the base d_model its hyperparameters were tuned at "
                "(e.g. model.mup_base_width=128)",
            )

    @property
    def variant_values(self) -> dict[str, Any]:
        """The settings of the registered attention variants, defaults filled in."""
        return variant_settings() | dict(self.attn_settings)

    def window_of(self, layer: int) -> int | None:
        """Layer `layer`'s sliding window (None: global attention): every attn_global_every-th
        layer (the 2nd, 4th, ... with 2) is global, the others local; all local without it."""
        every = self.attn_global_every
        if self.attn_window is None or (every is not None and (layer + 1) % every == 0):
            return None
        return self.attn_window

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def width_mult(self) -> float:
        """μP's width ratio d_model / mup_base_width; 1.0 under sp."""
        if self.parametrization == "sp":
            return 1.0
        assert self.mup_base_width is not None  # checked in __post_init__
        return self.d_model / self.mup_base_width

    @property
    def attention_scale(self) -> float | None:
        """The factor on q·k: None (SDPA's 1/sqrt(d_head)) under sp; under μP
        sqrt(base_d_head) / d_head, 1/d_head as μP says, equal to sp's (None) at the base."""
        if self.parametrization == "sp":
            return None
        assert self.mup_base_width is not None
        base = self.mup_base_d_head or self.mup_base_width / self.n_heads
        if base == self.d_head:  # SDPA's own default, to the last bit
            return None
        return math.sqrt(base) / self.d_head

    def padded_vocab(self, vocab_size: int) -> int:
        """Rows of the tables of a vocabulary of vocab_size: the next multiple of
        vocab_pad_multiple."""
        return -(-vocab_size // self.vocab_pad_multiple) * self.vocab_pad_multiple

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
        """The ModelConfig of a network's keyword arguments (other arguments are ignored); the
        settings of registered attention variants go to attn_settings."""
        variants = variant_settings()
        extra = tuple(sorted((k, v) for k, v in arguments.items() if k in variants))
        own = {k: v for k, v in arguments.items() if k in MODEL_SETTINGS and k != "attn_settings"}
        return cls(**own, attn_settings=extra)


MODEL_SETTINGS = frozenset(f.name for f in fields(ModelConfig))
RESERVED_KEYS.update(MODEL_SETTINGS)

_TYPE_NAMES = {int: "int", float: "float", str: "str", bool: "bool", type(None): "null"}


def _check_type(key: str, value: Any, hint: Any) -> None:
    """int, float, str, bool or a union of them with None (a bool is not an int here)."""
    allowed = typing.get_args(hint) or (hint,)
    if isinstance(value, bool):
        ok = bool in allowed
    else:
        ok = any(isinstance(value, int | float if t is float else t) for t in allowed)
    if not ok:
        expected = " or ".join(_TYPE_NAMES[t] for t in allowed)
        raise invalid(key, value, f"expected {expected}")
