"""Rotary embeddings from cached cos/sin tables match the formula computed per call."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from attnlab.models import DecoderOnly, KVCache, MultiHeadAttention
from attnlab.models.rotary import RotaryEmbedding, rotate_half


def rope_per_call(x: Tensor, start: int, base: float = 10000.0) -> Tensor:
    """The implementation before the tables: angles computed on every call, in float32."""
    d_head = x.size(-1)
    inv_freq = base ** (-torch.arange(0, d_head, 2, dtype=torch.float32) / d_head)
    positions = torch.arange(start, start + x.size(-2), dtype=torch.float32)
    angles = positions[:, None] * inv_freq[None, :]
    angles = torch.cat((angles, angles), dim=-1)
    return (x * angles.cos() + rotate_half(x) * angles.sin()).to(x.dtype)


def rope_exact(x: Tensor, start: int) -> Tensor:
    """The same formula in float64 throughout."""
    d_head = x.size(-1)
    inv_freq = 10000.0 ** (-torch.arange(0, d_head, 2, dtype=torch.float64) / d_head)
    positions = torch.arange(start, start + x.size(-2), dtype=torch.float64)
    angles = positions[:, None] * inv_freq[None, :]
    angles = torch.cat((angles, angles), dim=-1)
    return x.double() * angles.cos() + rotate_half(x.double()) * angles.sin()


@pytest.mark.parametrize("d_head", [8, 32])
def test_tables_match_the_per_call_formula_at_random_offsets(d_head: int) -> None:
    rope = RotaryEmbedding(d_head, max_len=64)
    offsets = [(int(torch.randint(0, 60, ())), int(torch.randint(1, 40, ()))) for _ in range(4)]
    for start, length in [*offsets, (50, 49)]:  # the last one past max_len
        q, k = torch.randn(2, 3, length, d_head), torch.randn(2, 3, length, d_head)
        q_rot, k_rot = rope.rotate(q, k, start)
        # float32 angles lose ~1e-5 rad at these positions; the tables are computed in float64.
        torch.testing.assert_close(q_rot, rope_per_call(q, start), atol=2e-4, rtol=1e-4)
        torch.testing.assert_close(k_rot, rope_per_call(k, start), atol=2e-4, rtol=1e-4)
        torch.testing.assert_close(q_rot.double(), rope_exact(q, start), atol=1e-5, rtol=1e-5)
    assert rope.cos.size(0) >= 99  # grew past max_len when asked


def test_tables_are_computed_once_and_follow_the_module() -> None:
    rope = RotaryEmbedding(16, max_len=32)
    assert rope.cos.shape == rope.sin.shape == (32, 16)
    table = rope.cos.data_ptr()
    rope(torch.randn(1, 2, 32, 16), start=0)
    rope(torch.randn(1, 2, 1, 16), start=31)
    assert rope.cos.data_ptr() == table  # sliced, not recomputed
    assert "cos" not in rope.state_dict()  # a function of the config, not a weight
    rope.double()  # computed again in float64, not float32 values converted
    assert rope.cos.dtype == torch.float64 and rope.cos.shape == (32, 16)
    x = torch.randn(1, 1, 5, 16, dtype=torch.float64)
    torch.testing.assert_close(rope(x, start=7), rope_exact(x, 7), rtol=1e-12, atol=1e-12)
    rope.bfloat16()  # grown after a cast: still computed in float64, stored in bfloat16
    y = torch.randn(1, 1, 40, 16, dtype=torch.bfloat16)
    assert rope(y, start=20).dtype == torch.bfloat16 and rope.cos.dtype == torch.bfloat16
    angles = 50 * 10000.0 ** (-torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    assert torch.equal(rope.cos[50], torch.cat([angles, angles]).cos().bfloat16())


def test_rope_network_builds_its_tables_to_max_len() -> None:
    model = DecoderOnly(50, d_model=32, n_heads=2, n_layers=2, pos="rope", max_len=24)
    for layer in model.layers:
        assert layer.self_attn.positions.cos.size(0) == 24


def test_cached_rope_attention_matches_uncached_past_the_reserved_length() -> None:
    """KV-cache offsets: step-by-step decoding equals one causal pass, also beyond max_len."""
    mha = MultiHeadAttention.from_arguments(
        32, 4, n_kv_heads=2, relative_pos="rope", max_len=8
    ).eval()
    x = torch.randn(2, 13, 32)
    full = mha(x, causal=True)
    cache = KVCache()
    prompt = int(torch.randint(1, 6, ()))
    steps = [mha(x[:, :prompt], causal=True, cache=cache)]
    steps += [mha(x[:, t : t + 1], causal=True, cache=cache) for t in range(prompt, 13)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
