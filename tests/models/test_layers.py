"""Feed-forward network, norm factory, and token embedding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab.models import FeedForward, TokenEmbedding, build_norm


@pytest.mark.parametrize(("activation", "fn"), [("relu", F.relu), ("gelu", F.gelu)])
def test_feedforward_computes_linear_act_linear(activation: str, fn) -> None:
    ffn = FeedForward(8, 32, activation=activation)
    x = torch.randn(2, 5, 8)
    expected = ffn.linear2(fn(ffn.linear1(x)))
    torch.testing.assert_close(ffn(x), expected)


def test_feedforward_bias_flag() -> None:
    ffn = FeedForward(8, 16, bias=False)
    assert ffn.linear1.bias is None and ffn.linear2.bias is None


def test_feedforward_dropout_after_activation() -> None:
    ffn = FeedForward(8, 16, activation="gelu", dropout=0.5).train()
    x = torch.randn(2, 3, 8)
    # Same seed, same shape: the same dropout mask. GELU does not commute with dropout's
    # rescaling, so this also pins the order (activation first, as in the paper).
    torch.manual_seed(0)
    out = ffn(x)
    torch.manual_seed(0)
    expected = ffn.linear2(F.dropout(F.gelu(ffn.linear1(x)), p=0.5))
    torch.testing.assert_close(out, expected)


def test_unknown_activation_lists_choices() -> None:
    with pytest.raises(ValueError, match=r"'swish'.*'relu', 'gelu'"):
        FeedForward(8, 16, activation="swish")


def test_layernorm() -> None:
    norm = build_norm("layernorm", 12, eps=1e-3)
    assert isinstance(norm, nn.LayerNorm)
    assert norm.eps == 1e-3 and norm.normalized_shape == (12,)
    assert build_norm("layernorm", 12, bias=False).bias is None


def test_unknown_norm_lists_choices() -> None:
    with pytest.raises(ValueError, match=r"'batchnorm'.*'layernorm', 'rmsnorm'"):
        build_norm("batchnorm", 8)


def test_rmsnorm_matches_its_formula() -> None:
    norm = build_norm("rmsnorm", 12, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(12))
    x = torch.randn(3, 5, 12) * 4 + 1  # not centred: RMSNorm must not subtract the mean
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected)
    assert sum(p.numel() for p in norm.parameters()) == 12  # a gain, no shift


@pytest.mark.parametrize("scale", [True, False])
def test_token_embedding_scale(scale: bool) -> None:
    embed = TokenEmbedding(20, 16, scale=scale)
    tokens = torch.randint(20, (2, 5))
    factor = math.sqrt(16) if scale else 1.0
    torch.testing.assert_close(embed(tokens), embed.embedding.weight[tokens] * factor)
    assert embed.weight is embed.embedding.weight
