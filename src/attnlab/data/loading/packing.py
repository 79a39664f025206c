"""Lines of tokenised text, and consecutive lines packed into sequences of a token budget.

A tokenised text is one flat stream in which every line's ids are followed by a separator id
(`WordPieceTokenizer.encode_lines`): a 1-D array, so the token cache stores it as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np


def encode_stream(
    tokenizer: Any, lines: Sequence[str], sep_id: int, chunk: int = 1 << 14
) -> np.ndarray:
    """One flat int64 stream: the ids of each line (HF `tokenizers.Tokenizer`, no special
    tokens) followed by `sep_id`. Encoded `chunk` lines at a time: the Encoding objects of a
    whole corpus at once would take many times its size."""
    # encode_batch_fast skips character offsets (tokenizers >= 0.21); both run in Rust.
    encode_batch = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    parts = []
    for begin in range(0, len(lines), chunk):
        encodings = encode_batch(list(lines[begin : begin + chunk]), add_special_tokens=False)
        parts.append(
            np.fromiter(
                chain.from_iterable(chain(e.ids, (sep_id,)) for e in encodings),
                dtype=np.int64,
                count=sum(len(e.ids) + 1 for e in encodings),
            )
        )
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Lines:
    """The lines of a stream: `content` (separators removed) and each line's span in it."""

    content: np.ndarray  # 1-D ids
    starts: np.ndarray  # (num_lines,)
    lengths: np.ndarray  # (num_lines,); 0 for an empty line

    @classmethod
    def from_stream(cls, stream: np.ndarray, sep_id: int) -> Lines:
        is_sep = np.asarray(stream) == sep_id
        ends = np.flatnonzero(is_sep)
        lengths = np.diff(ends, prepend=-1) - 1
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return cls(np.asarray(stream)[~is_sep], starts, lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def line(self, index: int) -> np.ndarray:
        start = self.starts[index]
        return self.content[start : start + self.lengths[index]]


def pack(lengths: np.ndarray, budget: int) -> np.ndarray:
    """Bounds (n + 1,) into the content of consecutive lines: sequence i is
    `content[bounds[i]:bounds[i + 1]]`, at most `budget` tokens, never empty.

    Greedy: lines are added to the current sequence while they fit. A line longer than the
    budget is cut into budget-sized pieces (and the last, shorter piece) rather than dropped.
    Empty lines add nothing. Every token of the text is in exactly one sequence.
    """
    if budget < 1:
        raise ValueError(f"a sequence needs room for at least one token, got budget={budget}")
    bounds, filled, position = [0], 0, 0
    for length in lengths.tolist():
        while length > 0:
            if filled == budget or (filled and filled + length > budget):
                bounds.append(position)
                filled = 0
            piece = min(length, budget - filled)
            position, filled, length = position + piece, filled + piece, length - piece
    if filled:
        bounds.append(position)
    return np.asarray(bounds, dtype=np.int64)
