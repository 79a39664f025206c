"""The table of position schemes: each name, where it acts, and what builds it.

A scheme acts in one of two places:
- "embeddings": a module added to the token embeddings, built as `build(d_model, max_len)`
  and called as `module(x, start=0, positions=None) -> x` (positional.py);
- "attention": a module inside every self-attention layer, built as `build(d_head, n_heads)`,
  an `AttentionPositions` that rotates q/k or biases the scores (rotary.py, alibi.py); the
  embeddings then get nothing added.
`register_position_scheme` adds one without editing attnlab (see docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import nn

from attnlab.models.alibi import ALiBi
from attnlab.models.checks import check_choice
from attnlab.models.positional import (
    AttentionPositions,
    LearnedPositionalEmbedding,
    NoPositionalEncoding,
    SinusoidalPositionalEncoding,
)
from attnlab.models.rotary import RotaryEmbedding


@dataclass(frozen=True)
class PositionScheme:
    """One position scheme. gives_order: False for a scheme that tells the network nothing
    about word order ("none"), which only causal attention can do without."""

    name: str
    acts_in: Literal["embeddings", "attention"]
    build: Callable[[int, int], nn.Module]
    gives_order: bool = True


POSITION_SCHEMES: dict[str, PositionScheme] = {}


def register_position_scheme(scheme: PositionScheme) -> PositionScheme:
    """Make `scheme.name` a valid `model.pos`; refuses to replace an existing name."""
    if scheme.acts_in not in ("embeddings", "attention"):
        raise ValueError(f"acts_in={scheme.acts_in!r}: choose 'embeddings' or 'attention'")
    if scheme.name in POSITION_SCHEMES:
        raise ValueError(f"position scheme {scheme.name!r} is registered already")
    POSITION_SCHEMES[scheme.name] = scheme
    return scheme


def unregister_position_scheme(name: str) -> None:
    """Remove a registered scheme (e.g. a test's, when it is done)."""
    del POSITION_SCHEMES[name]


def position_scheme(name: str) -> PositionScheme:
    """The scheme called `name`; an unknown name is an error listing the known ones."""
    check_choice("pos", name, POSITION_SCHEMES)
    return POSITION_SCHEMES[name]


def build_positional(kind: str, d_model: int, max_len: int) -> nn.Module:
    """What adds positions to the embeddings for scheme `kind` (nothing if it acts inside
    attention)."""
    scheme = position_scheme(kind)
    if scheme.acts_in == "attention":
        return NoPositionalEncoding()
    return scheme.build(d_model, max_len)


def build_attention_positions(kind: str | None, d_head: int, n_heads: int) -> nn.Module | None:
    """What self-attention applies for scheme `kind`: None for embedding-side schemes."""
    if kind is None:
        return None
    scheme = position_scheme(kind)
    if scheme.acts_in == "embeddings":
        return None
    module = scheme.build(d_head, n_heads)
    if not isinstance(module, AttentionPositions):
        raise TypeError(f"position scheme {kind!r} must build an AttentionPositions")
    return module


for _scheme in (
    PositionScheme("sinusoidal", "embeddings", SinusoidalPositionalEncoding),
    PositionScheme("learned", "embeddings", LearnedPositionalEmbedding),
    PositionScheme("rope", "attention", lambda d_head, n_heads: RotaryEmbedding(d_head)),
    PositionScheme("alibi", "attention", lambda d_head, n_heads: ALiBi(n_heads)),
    PositionScheme("none", "embeddings", lambda d_model, max_len: NoPositionalEncoding(), False),
):
    register_position_scheme(_scheme)
