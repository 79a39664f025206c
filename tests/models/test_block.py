"""TransformerBlock: layout, causality, and misuse errors (torch equivalence lives elsewhere)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnlab.models import TransformerBlock


def test_layout_without_cross_attention() -> None:
    block = TransformerBlock.from_arguments(16, 4, 32)
    assert block.cross_attn is None and block.norm3 is None
    assert isinstance(block.norm1, nn.LayerNorm) and isinstance(block.norm2, nn.LayerNorm)
    names = {name.split(".")[0] for name, _ in block.named_parameters()}
    assert names == {"self_attn", "ffn", "norm1", "norm2"}


def test_layout_with_cross_attention() -> None:
    block = TransformerBlock.from_arguments(16, 4, 32, cross_attention=True)
    names = {name.split(".")[0] for name, _ in block.named_parameters()}
    assert names == {"self_attn", "cross_attn", "ffn", "norm1", "norm2", "norm3"}


@pytest.mark.parametrize("cross_attention", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
def test_causal_block_ignores_future(norm_first: bool, cross_attention: bool) -> None:
    block = TransformerBlock.from_arguments(
        16, 4, 32, norm_first=norm_first, cross_attention=cross_attention
    )
    block.eval()
    memory = torch.randn(2, 3, 16) if cross_attention else None
    x = torch.randn(2, 6, 16)
    x_changed = x.clone()
    x_changed[:, 3:] = torch.randn(2, 3, 16)

    out = block(x, causal=True, memory=memory)
    out_changed = block(x_changed, causal=True, memory=memory)
    torch.testing.assert_close(out[:, :3], out_changed[:, :3])
    assert not torch.allclose(out[:, 3:], out_changed[:, 3:])


def test_non_causal_block_sees_future() -> None:
    """The converse, so the causal test above cannot pass by ignoring context altogether."""
    block = TransformerBlock.from_arguments(16, 4, 32).eval()
    x = torch.randn(1, 4, 16)
    x_changed = x.clone()
    x_changed[:, -1] = torch.randn(16)
    assert not torch.allclose(block(x)[:, 0], block(x_changed)[:, 0])


def test_memory_must_match_cross_attention() -> None:
    x = torch.randn(1, 4, 16)
    with pytest.raises(ValueError, match="memory"):
        TransformerBlock.from_arguments(16, 4, 32, cross_attention=True)(x)
    with pytest.raises(ValueError, match="memory"):
        TransformerBlock.from_arguments(16, 4, 32)(x, memory=x)


@pytest.mark.parametrize("cross_attention", [False, True])
def test_residual_dropout_on_each_sublayer(cross_attention: bool) -> None:
    """With p=1 every sublayer output is dropped and only the residual path is left."""
    memory = torch.randn(2, 3, 16) if cross_attention else None
    x = torch.randn(2, 5, 16)
    pre = TransformerBlock.from_arguments(
        16, 4, 32, dropout=1.0, norm_first=True, cross_attention=cross_attention
    )
    torch.testing.assert_close(pre.train()(x, memory=memory), x)

    post = TransformerBlock.from_arguments(
        16, 4, 32, dropout=1.0, cross_attention=cross_attention
    ).train()
    norms = [post.norm1, post.norm2] + ([post.norm3] if cross_attention else [])
    expected = x
    for norm in norms:
        expected = norm(expected)
    torch.testing.assert_close(post(x, memory=memory), expected)


def test_residual_dropout_only_in_training() -> None:
    block = TransformerBlock.from_arguments(16, 4, 32, dropout=0.3)
    x = torch.randn(2, 5, 16)
    block.train()
    assert not torch.allclose(block(x), block(x))
    block.eval()
    torch.testing.assert_close(block(x), block(x))
