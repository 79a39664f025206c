"""Positional encodings: the 2017 formula, offsets, length checks, and the factory."""

from __future__ import annotations

import math

import pytest
import torch

from attnlab.models import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    build_positional,
)


@pytest.mark.parametrize("d_model", [8, 7])
def test_sinusoidal_matches_formula(d_model: int) -> None:
    pe = SinusoidalPositionalEncoding(d_model, max_len=2000).pe
    for pos in (0, 1, 5, 123, 1999):
        for j in range(d_model):
            i = j // 2  # column 2i is a sine, column 2i + 1 the matching cosine
            angle = pos / 10000 ** (2 * i / d_model)
            expected = math.sin(angle) if j % 2 == 0 else math.cos(angle)
            assert pe[pos, j].item() == pytest.approx(expected, abs=1e-6), (pos, j)


@pytest.mark.parametrize("kind", ["sinusoidal", "learned"])
def test_forward_adds_positions_from_start(kind: str) -> None:
    module = build_positional(kind, 6, max_len=20)
    table = module.pe if kind == "sinusoidal" else module.embedding.weight  # (L, D)
    x = torch.randn(2, 4, 6)
    torch.testing.assert_close(module(x), x + table[:4])
    torch.testing.assert_close(module(x, start=9), x + table[9:13])


def test_sinusoidal_is_a_non_persistent_buffer() -> None:
    module = SinusoidalPositionalEncoding(8, max_len=16)
    assert "pe" in dict(module.named_buffers())
    assert "pe" not in module.state_dict()
    assert not list(module.parameters())


@pytest.mark.parametrize("kind", ["sinusoidal", "learned"])
def test_too_long_input_is_a_clear_error(kind: str) -> None:
    module = build_positional(kind, 8, max_len=10)
    module(torch.randn(1, 10, 8))  # exactly max_len is fine
    with pytest.raises(ValueError, match="max_len=10"):
        module(torch.randn(1, 11, 8))
    with pytest.raises(ValueError, match="max_len=10"):
        module(torch.randn(1, 4, 8), start=7)


def test_learned_positions_are_trained() -> None:
    module = LearnedPositionalEmbedding(8, max_len=10)
    module(torch.randn(2, 3, 8)).sum().backward()
    grad = module.embedding.weight.grad
    assert grad[:3].abs().sum() > 0
    assert torch.all(grad[3:] == 0)


def test_none_is_identity() -> None:
    module = build_positional("none", 8, max_len=4)
    x = torch.randn(2, 9, 8)
    assert torch.equal(module(x, start=3), x)  # no max_len limit either


def test_unknown_kind_lists_choices() -> None:
    with pytest.raises(
        ValueError, match=r"'rotary'.*'sinusoidal', 'learned', 'rope', 'alibi', 'none'"
    ):
        build_positional("rotary", 8, 16)
