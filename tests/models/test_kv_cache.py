"""KV cache: decoding in pieces against the cache equals one full causal forward pass."""

from __future__ import annotations

import pytest
import torch

from attnlab.models import DecoderOnly, KVCache, MultiHeadAttention, TransformerBlock

# Sizes of the pieces fed one after another: a prefill, single steps, and multi-token chunks.
CHUNKS = [4, 1, 1, 3, 1, 2]
T = sum(CHUNKS)


def pieces(x: torch.Tensor, sizes: list[int] = CHUNKS) -> list[tuple[int, torch.Tensor]]:
    """Split (B, T, ...) along time into (start, piece) pairs."""
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return list(zip(starts, x.split(sizes, dim=1), strict=True))


def test_cache_appends_and_reorders() -> None:
    cache = KVCache()
    assert len(cache) == 0
    k1, v1 = torch.randn(3, 2, 4, 5), torch.randn(3, 2, 4, 5)
    k2, v2 = torch.randn(3, 2, 1, 5), torch.randn(3, 2, 1, 5)
    cache.append(k1, v1)
    k, v = cache.append(k2, v2)
    assert len(cache) == 5
    torch.testing.assert_close(k, torch.cat([k1, k2], dim=2))
    torch.testing.assert_close(v, torch.cat([v1, v2], dim=2))

    order = torch.tensor([2, 0, 0])  # beams may be dropped and duplicated
    cache.reorder(order)
    torch.testing.assert_close(cache.k, k[order])
    torch.testing.assert_close(cache.v, v[order])


@pytest.mark.parametrize("with_padding", [False, True], ids=["fast-path", "mask-path"])
def test_self_attention_cache_matches_full(with_padding: bool) -> None:
    mha = MultiHeadAttention.from_arguments(16, 4).eval()
    x = torch.randn(3, T, 16)
    pad = None
    if with_padding:
        pad = torch.rand(3, T) < 0.3
        pad[1, :2] = True  # left padding: fully masked first queries
    full = mha(x, key_padding_mask=pad, causal=True)

    cache = KVCache()
    outs = []
    for start, piece in pieces(x):
        mask = None if pad is None else pad[:, : start + piece.size(1)]  # cached keys too
        outs.append(mha(piece, key_padding_mask=mask, causal=True, cache=cache))
    assert len(cache) == T
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=1e-5)


def test_cache_sees_the_past() -> None:
    """The converse: a cache that dropped the earlier keys would not match (the test can fail)."""
    mha = MultiHeadAttention.from_arguments(16, 4).eval()
    x = torch.randn(2, 6, 16)
    full = mha(x, causal=True)
    cache = KVCache()
    mha(x[:, :5], causal=True, cache=cache)
    assert torch.allclose(mha(x[:, 5:], causal=True, cache=cache), full[:, 5:], atol=1e-5)
    assert not torch.allclose(mha(x[:, 5:], causal=True), full[:, 5:], atol=1e-3)


def test_cross_attention_cache_projects_memory_once() -> None:
    mha = MultiHeadAttention.from_arguments(16, 4).eval()
    query, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    memory_pad = torch.tensor([[False] * 7, [False] * 4 + [True] * 3])
    full = mha(query, memory, key_padding_mask=memory_pad)

    calls = []
    project_kv = mha.project_kv
    mha.project_kv = lambda memory: calls.append("k") or project_kv(memory)
    cache = KVCache()
    outs = [mha(q, memory, key_padding_mask=memory_pad, cache=cache) for q in query.split(1, 1)]
    assert calls == ["k"]  # projected on the first step only
    assert len(cache) == 7  # the memory's keys, not one per step
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_block_with_self_and_cross_caches(norm_first: bool) -> None:
    """The encoder-decoder's decoder block can decode incrementally with both caches."""
    block = TransformerBlock.from_arguments(
        16, 4, 32, norm_first=norm_first, cross_attention=True
    ).eval()
    x, memory = torch.randn(2, T, 16), torch.randn(2, 5, 16)
    memory_pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    full = block(x, causal=True, memory=memory, memory_padding_mask=memory_pad)

    cache, cross_cache = KVCache(), KVCache()
    outs = [
        block(
            piece,
            causal=True,
            memory=memory,
            memory_padding_mask=memory_pad,
            cache=cache,
            cross_cache=cross_cache,
        )
        for _, piece in pieces(x)
    ]
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=1e-5)


def test_reordered_caches_continue_the_reordered_batch() -> None:
    """Beam search: after reorder(indices) the cache decodes rows x[indices]."""
    block = TransformerBlock.from_arguments(16, 4, 32, norm_first=True, cross_attention=True).eval()
    x, memory = torch.randn(3, 6, 16), torch.randn(3, 4, 16)
    order = torch.tensor([2, 2, 0])
    full = block(x[order], causal=True, memory=memory[order])

    cache, cross_cache = KVCache(), KVCache()
    block(x[:, :4], causal=True, memory=memory, cache=cache, cross_cache=cross_cache)
    cache.reorder(order)
    cross_cache.reorder(order)
    out = block(
        x[order, 4:], causal=True, memory=memory[order], cache=cache, cross_cache=cross_cache
    )
    torch.testing.assert_close(out, full[:, 4:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("norm_first", "pos", "knobs"),
    [
        (True, "learned", {}),
        (False, "sinusoidal", {}),
        (True, "none", {}),
        (True, "rope", {"n_kv_heads": 2}),
        (True, "alibi", {"qk_norm": True, "n_kv_heads": 1}),
    ],
)
def test_decoder_only_cached_logits_match_full(norm_first: bool, pos: str, knobs: dict) -> None:
    V = 23
    model = DecoderOnly(V, 32, 4, 2, norm_first=norm_first, pos=pos, max_len=T, **knobs).eval()
    idx = torch.randint(V, (3, T))
    full = model(idx)

    caches = [KVCache() for _ in model.layers]
    steps = [model(piece, caches=caches, start=start) for start, piece in pieces(idx)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_decoder_only_cache_with_padding_mask() -> None:
    V = 23
    model = DecoderOnly(V, 32, 4, 2, max_len=T).eval()
    idx = torch.randint(V, (2, T))
    pad = torch.zeros(2, T, dtype=torch.bool)
    pad[1, :3] = True  # the second row is left-padded
    full = model(idx, padding_mask=pad)

    caches = [KVCache() for _ in model.layers]
    steps = [
        model(piece, padding_mask=pad[:, : start + piece.size(1)], caches=caches, start=start)
        for start, piece in pieces(idx)
    ]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_cache_misuse_is_a_clear_error() -> None:
    model = DecoderOnly(11, 16, 2, 2, max_len=8).eval()
    idx = torch.randint(11, (1, 3))
    with pytest.raises(ValueError, match="one KVCache per layer"):
        model(idx, caches=[KVCache()])
    caches = [KVCache() for _ in model.layers]
    model(idx, caches=caches)
    with pytest.raises(ValueError, match=r"start=2 .*cached steps \(3\)"):
        model(idx[:, :1], caches=caches, start=2)
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape .*\(1, 4\)"):
        model(idx[:, :1], caches=caches, start=3, padding_mask=torch.zeros(1, 1, dtype=torch.bool))
