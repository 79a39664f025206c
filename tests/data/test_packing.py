"""Lines of a [SEP]-separated stream, and greedy packing of consecutive lines."""

from __future__ import annotations

import numpy as np
import pytest

from attnlab.data.loading.packing import Lines, pack

SEP = 3


def test_lines_of_a_stream_keep_empty_lines() -> None:
    lines = Lines.from_stream(np.array([10, 11, SEP, SEP, 12, SEP]), SEP)
    assert lines.lengths.tolist() == [2, 0, 1]
    assert lines.content.tolist() == [10, 11, 12]
    assert [lines.line(i).tolist() for i in range(len(lines))] == [[10, 11], [], [12]]


def test_greedy_packing_splits_long_lines_and_skips_empty_ones() -> None:
    bounds = pack(np.array([3, 0, 4, 10, 2]), budget=5)
    # [3] (4 more do not fit), [4], the 10-token line as [5] [5], then [2].
    assert bounds.tolist() == [0, 3, 7, 12, 17, 19]
    assert pack(np.array([2, 2, 1, 0]), budget=5).tolist() == [0, 5]
    assert pack(np.array([0, 0]), budget=5).tolist() == [0]


def test_packing_covers_every_token_once_within_the_budget() -> None:
    lengths = np.random.default_rng(0).integers(0, 40, 500)
    bounds = pack(lengths, budget=32)
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == lengths.sum()
    assert (sizes >= 1).all() and (sizes <= 32).all()


def test_budget_must_hold_a_token() -> None:
    with pytest.raises(ValueError, match="budget=0"):
        pack(np.array([1]), budget=0)
