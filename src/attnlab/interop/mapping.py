"""Tensor maps between attnlab's state_dict names and another library's.

A `TensorMap` names one of our tensors and the tensor(s) it is elsewhere: renamed, possibly
transposed (GPT-2's Conv1D stores a Linear's weight as (in, out)), or split into several
(our packed q/k/v projection is Llama's q_proj, k_proj and v_proj, stacked by rows). One table
serves both directions, so export and import cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TensorMap:
    """ours = cat(theirs, dim=0) (transposed if `transposed`); `rows`: the row count of each of
    `theirs` when there are several. vocab_rows: our table may have padded vocabulary rows
    (ModelConfig.vocab_pad_multiple) that the other side does not: keep the first vocab_rows.
    flipped: the rows are in reverse order there (BERT's next-sentence labels are ours
    swapped)."""

    ours: str
    theirs: tuple[str, ...]
    transposed: bool = False
    rows: tuple[int, ...] = ()
    vocab_rows: int | None = None
    flipped: bool = False


def rename(ours: str, theirs: str, transposed: bool = False) -> TensorMap:
    return TensorMap(ours, (theirs,), transposed)


def to_theirs(maps: Iterable[TensorMap], state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our state_dict `state` under the other names (contiguous copies, detached)."""
    out: dict[str, Tensor] = {}
    for m in maps:
        tensor = state[m.ours].detach()
        if m.vocab_rows is not None:
            tensor = tensor[: m.vocab_rows]
        if m.flipped:
            tensor = tensor.flip(0)
        parts = tensor.split(list(m.rows)) if len(m.theirs) > 1 else (tensor,)
        for name, part in zip(m.theirs, parts, strict=True):
            out[name] = (part.T if m.transposed else part).contiguous().clone()
    return out


def to_ours(maps: Iterable[TensorMap], state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The other side's `state` under our names; every tensor a map names must be there."""
    maps = list(maps)
    missing = [name for m in maps for name in m.theirs if name not in state]
    if missing:
        raise KeyError(f"missing weights {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    out: dict[str, Tensor] = {}
    for m in maps:
        parts = [state[name].detach() for name in m.theirs]
        tensor = torch.cat(parts) if len(parts) > 1 else parts[0]
        if m.flipped:
            tensor = tensor.flip(0)
        out[m.ours] = (tensor.T if m.transposed else tensor).contiguous().clone()
    return out
