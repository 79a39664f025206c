"""Attention maths, masking, and the NaN-free handling of fully masked rows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnlab.models import MultiHeadAttention, attention_reference
from tests.models.conftest import project_qkv


def _causal(tq: int, tk: int) -> torch.Tensor:
    return torch.ones(tq, tk, dtype=torch.bool).tril()  # True = may attend


@pytest.mark.parametrize(("tq", "tk"), [(5, 5), (3, 7)])
@pytest.mark.parametrize("masking", ["none", "bool", "causal", "bool+causal"])
def test_reference_matches_sdpa(masking: str, tq: int, tk: int) -> None:
    q = torch.randn(2, 3, tq, 8, dtype=torch.float64)
    k = torch.randn(2, 3, tk, 8, dtype=torch.float64)
    v = torch.randn(2, 3, tk, 8, dtype=torch.float64)
    mask = None
    if "bool" in masking:
        mask = torch.rand(2, 1, tq, tk) > 0.4
        mask[..., 0] = True  # every query sees at least one key
    causal = "causal" in masking

    ours = attention_reference(q, k, v, mask=mask, is_causal=causal)
    if mask is not None and causal:
        # SDPA takes either a mask or is_causal, so hand it the combination.
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask & _causal(tq, tk))
    else:
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    torch.testing.assert_close(ours, expected)


def test_reference_dropout_zeroes_weights() -> None:
    q, k, v = (torch.randn(1, 1, 4, 8) for _ in range(3))
    out = attention_reference(q, k, v, dropout_p=1.0)
    assert torch.all(out == 0)


@pytest.mark.parametrize("with_padding", [False, True], ids=["fast-path", "mask-path"])
def test_mha_causal_ignores_future(with_padding: bool) -> None:
    mha = MultiHeadAttention.from_arguments(16, 4).eval()
    x = torch.randn(2, 7, 16)
    mask = torch.zeros(2, 7, dtype=torch.bool) if with_padding else None
    out = mha(x, key_padding_mask=mask, causal=True)

    x_changed = x.clone()
    x_changed[:, 4:] = torch.randn(2, 3, 16)
    out_changed = mha(x_changed, key_padding_mask=mask, causal=True)

    torch.testing.assert_close(out[:, :4], out_changed[:, :4])
    assert not torch.allclose(out[:, 4:], out_changed[:, 4:])


def test_mha_fast_path_matches_mask_path() -> None:
    """is_causal=True inside SDPA and our explicit causal mask must agree."""
    mha = MultiHeadAttention.from_arguments(16, 2).double().eval()
    x = torch.randn(3, 6, 16, dtype=torch.float64)
    no_padding = torch.zeros(3, 6, dtype=torch.bool)
    torch.testing.assert_close(
        mha(x, causal=True), mha(x, key_padding_mask=no_padding, causal=True)
    )
    torch.testing.assert_close(mha(x), mha(x, key_padding_mask=no_padding))


def test_mha_matches_reference_per_head() -> None:
    """MultiHeadAttention = projections + attention_reference per head + output projection."""
    mha = MultiHeadAttention.from_arguments(12, 3).double().eval()
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(2, 5, 3, 4).transpose(1, 2)  # (B, H, T, Dh)

    q, k, v = (heads(t) for t in project_qkv(mha, x))
    att = attention_reference(q, k, v, mask=~pad[:, None, None, :], is_causal=True)
    expected = mha.out_proj(att.transpose(1, 2).reshape(2, 5, 12))
    torch.testing.assert_close(mha(x, key_padding_mask=pad, causal=True), expected)


@pytest.mark.parametrize("causal", [False, True])
def test_fully_masked_rows_are_zero_and_finite(causal: bool) -> None:
    mha = MultiHeadAttention.from_arguments(8, 2)
    x = torch.randn(3, 5, 8, requires_grad=True)
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[1] = True  # a sequence that is all padding: every query row is fully masked
    pad[2, :2] = True  # left padding: with causal, queries 0 and 1 see no key
    out = mha(x, key_padding_mask=pad, causal=causal)  # (B, T, D)

    empty = torch.zeros(3, 5, dtype=torch.bool)
    empty[1] = True
    if causal:
        empty[2, :2] = True
    assert torch.isfinite(out).all()
    # Zero attention output leaves only the output projection's bias.
    torch.testing.assert_close(out[empty], mha.out_proj.bias.expand(int(empty.sum()), -1))

    out.pow(2).sum().backward()
    assert torch.isfinite(x.grad).all()
    for name, p in mha.named_parameters():
        assert torch.isfinite(p.grad).all(), name
    assert torch.all(x.grad[1] == 0)  # a fully padded sequence influences nothing


def test_attention_dropout_only_in_training() -> None:
    mha = MultiHeadAttention.from_arguments(16, 4, dropout=0.5)
    x = torch.randn(2, 6, 16)
    mha.eval()
    torch.testing.assert_close(mha(x), mha(x))
    mha.train()
    assert not torch.allclose(mha(x), mha(x))


def test_cross_attention_shapes() -> None:
    mha = MultiHeadAttention.from_arguments(16, 4)
    out = mha(torch.randn(2, 3, 16), torch.randn(2, 9, 16))
    assert out.shape == (2, 3, 16)


def test_heads_must_divide_d_model() -> None:
    with pytest.raises(ValueError, match=r"d_model \(10\).*n_heads \(4\)"):
        MultiHeadAttention.from_arguments(10, 4)


def test_non_bool_padding_mask_is_rejected() -> None:
    mha = MultiHeadAttention.from_arguments(8, 2)
    with pytest.raises(TypeError, match="bool"):
        mha(torch.randn(1, 3, 8), key_padding_mask=torch.tensor([[0, 0, 1]]))
