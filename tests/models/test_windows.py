"""Sliding-window attention, soft-capping and the kernel dispatcher, against references."""

from __future__ import annotations

import pytest
import torch

from attnlab.models import DecoderOnly, EncoderDecoder, EncoderOnly, ModelConfig
from attnlab.models.attention import MultiHeadAttention, attention_reference
from attnlab.models.attention_kernels import attend, choose_kernel
from attnlab.models.masks import causal, padding, sliding_window

D, H, T = 32, 4, 10


def qkv(B: int = 2, Tq: int = T, Tk: int = T) -> tuple[torch.Tensor, ...]:
    return tuple(torch.randn(B, H, n, D // H, dtype=torch.float64) for n in (Tq, Tk, Tk))


def window_mask(T: int, W: int, is_causal: bool) -> torch.Tensor:
    """An independent reference: loops over (i, j)."""
    mask = torch.zeros(T, T, dtype=torch.bool)
    for i in range(T):
        for j in range(T):
            mask[i, j] = (i - W < j <= i) if is_causal else abs(i - j) < W
    return mask


@pytest.mark.parametrize("is_causal", [True, False])
@pytest.mark.parametrize("W", [1, 3, 7])
def test_window_matches_an_explicit_mask_reference(is_causal: bool, W: int) -> None:
    q, k, v = qkv()
    out = attend(q, k, v, is_causal=is_causal, mask_mods=[sliding_window(W, is_causal)])
    expected = attention_reference(q, k, v, mask=window_mask(T, W, is_causal))
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("is_causal", [True, False])
def test_window_of_the_whole_sequence_is_full_attention(is_causal: bool) -> None:
    q, k, v = qkv()
    windowed = attend(q, k, v, is_causal=is_causal, mask_mods=[sliding_window(T, is_causal)])
    full = attention_reference(q, k, v, is_causal=is_causal)
    torch.testing.assert_close(windowed, full)


def test_window_one_attends_only_to_itself() -> None:
    q, k, v = qkv()
    out = attend(q, k, v, is_causal=True, mask_mods=[sliding_window(1, True)])
    torch.testing.assert_close(out, v)  # the only visible key is the query's own


def test_softcap_matches_a_hand_written_reference() -> None:
    config = ModelConfig(d_model=D, n_heads=H, attn_softcap=2.0, pos="none")
    mha = MultiHeadAttention(config).double().eval()
    x = torch.randn(2, T, D, dtype=torch.float64)
    q, k, v = mha.qkv_proj(x).split(mha.qkv_proj.splits, dim=-1)
    q, k, v = (t.view(2, T, H, D // H).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-2, -1) / (D // H) ** 0.5
    scores = 2.0 * torch.tanh(scores / 2.0)
    scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    expected = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, T, D)
    torch.testing.assert_close(mha(x, causal=True), mha.out_proj(expected))
    assert (mha(x, causal=True) - mha.out_proj(expected)).abs().max() < 1e-10


def test_the_dispatcher_keeps_fused_sdpa_for_plain_causal_attention() -> None:
    assert choose_kernel(True, 0, T) == "sdpa_causal"
    assert choose_kernel(False, 0, T) == "sdpa"
    assert choose_kernel(True, 5, 1) == "sdpa"  # one decoding step sees every key
    assert choose_kernel(True, 0, T, mask_mods=[sliding_window(4, True)]) == "sdpa_masked"
    assert choose_kernel(True, 0, T, bias=True) == "sdpa_masked"
    assert choose_kernel(True, 0, T, score_mods=[lambda s, *_: s]) == "explicit"
    assert choose_kernel(True, 0, T, documents=True) == "document"
    assert choose_kernel(True, 0, T, mask_mods=[causal], documents=True) == "sdpa_masked"
    net = DecoderOnly(50, d_model=D, n_heads=H, n_layers=2, max_len=16)
    assert not any(layer.self_attn.needs_explicit_mask for layer in net.layers)


def test_global_every_makes_every_kth_layer_global() -> None:
    net = DecoderOnly(50, d_model=D, n_heads=H, n_layers=4, attn_window=3, attn_global_every=2)
    assert [layer.self_attn.window for layer in net.layers] == [3, None, 3, None]
    net = DecoderOnly(50, d_model=D, n_heads=H, n_layers=2, attn_window=3)
    assert [layer.self_attn.window for layer in net.layers] == [3, 3]


@pytest.mark.parametrize("key", ["attn_window", "attn_global_every", "attn_softcap"])
def test_bad_values_are_refused_naming_the_key(key: str) -> None:
    with pytest.raises(ValueError, match=f"model.{key}=0 is not valid"):
        ModelConfig(**{key: 0})


def test_cached_generation_equals_uncached_with_a_window_and_softcap() -> None:
    torch.manual_seed(0)
    net = DecoderOnly(
        50,
        d_model=D,
        n_heads=H,
        n_layers=3,
        max_len=32,
        attn_window=3,
        attn_global_every=3,
        attn_softcap=5.0,
        pos="rope",
    ).eval()
    prompt = torch.randint(0, 50, (2, 4))
    cached = net.generate(prompt, 12, temperature=0.0)
    uncached = net.generate(prompt, 12, temperature=0.0, use_cache=False)
    assert torch.equal(cached, uncached)
    idx = cached[:, :-1]
    full = net(idx)
    caches = net.new_caches()
    steps = [net(idx[:, :5], caches=caches)]
    steps += [net(idx[:, t : t + 1], caches=caches, start=t) for t in range(5, idx.size(1))]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)


def test_window_changes_a_token_only_through_keys_in_range() -> None:
    """Causal W: the output at i does not depend on tokens before i - W + 1 (one layer)."""
    torch.manual_seed(0)
    net = DecoderOnly(50, d_model=D, n_heads=H, n_layers=1, max_len=16, attn_window=3).eval()
    x = torch.randint(0, 50, (1, 12))
    y = x.clone()
    y[0, 0] = (x[0, 0] + 1) % 50
    torch.testing.assert_close(net(x)[:, 3:], net(y)[:, 3:])
    assert not torch.allclose(net(x)[:, :3], net(y)[:, :3])


def test_encoders_use_a_symmetric_window_and_padding_still_applies() -> None:
    torch.manual_seed(0)
    bert = EncoderOnly(50, d_model=D, n_heads=H, n_layers=1, attn_window=2, dropout=0.0).eval()
    x = torch.randint(1, 50, (1, 8))
    y = x.clone()
    y[0, 7] = (x[0, 7] + 1) % 49 + 1
    h_x, h_y = bert.encode(x), bert.encode(y)
    torch.testing.assert_close(h_x[:, :6], h_y[:, :6])  # |i - 7| >= 2: unaffected
    assert not torch.allclose(h_x[:, 6], h_y[:, 6])
    pad = torch.zeros(1, 8, dtype=torch.bool)
    pad[0, 7] = True
    torch.testing.assert_close(bert.encode(x, pad)[:, :7], bert.encode(y, pad)[:, :7])
    mask = padding(pad)(
        torch.zeros(1, 1, 1, 1, dtype=torch.long), 0, 0, torch.arange(8)[None, None, None]
    )
    assert mask.shape == (1, 1, 1, 8)


def test_flops_count_the_window_keys() -> None:
    full = DecoderOnly(50, d_model=D, n_heads=H, n_layers=4, max_len=64)
    local = DecoderOnly(
        50, d_model=D, n_heads=H, n_layers=4, max_len=64, attn_window=8, attn_global_every=2
    )
    seq = 64
    # two local layers read 8 keys instead of 64: 12 * d_model * (64 - 8) each fewer
    assert full.flops_per_token(seq) - local.flops_per_token(seq) == 2 * 12 * D * (seq - 8)
    assert local.flops_per_token(4) == full.flops_per_token(4)  # W > seq_len: no change
    bert_full = EncoderOnly(50, d_model=D, n_heads=H, n_layers=2)
    bert_local = EncoderOnly(50, d_model=D, n_heads=H, n_layers=2, attn_window=8)
    assert bert_full.flops_per_token(seq) - bert_local.flops_per_token(seq) == 2 * 12 * D * 56
    ed_full = EncoderDecoder(50, d_model=D, n_heads=H, n_encoder_layers=1, n_decoder_layers=1)
    ed_local = EncoderDecoder(
        50, d_model=D, n_heads=H, n_encoder_layers=1, n_decoder_layers=1, attn_window=8
    )
    # per token (source and target averaged): the encoder's and decoder's self-attention
    assert ed_full.flops_per_token(seq) - ed_local.flops_per_token(seq) == 12 * D * 56


def test_encdec_window_and_softcap_decode_with_cache_as_one_pass() -> None:
    torch.manual_seed(0)
    net = EncoderDecoder(
        50,
        d_model=D,
        n_heads=H,
        n_encoder_layers=1,
        n_decoder_layers=2,
        attn_window=2,
        attn_softcap=3.0,
        dropout=0.0,
    ).eval()
    src, tgt = torch.randint(1, 50, (2, 7)), torch.randint(1, 50, (2, 6))
    memory = net.encode(src)
    one_pass = net.decode(tgt, memory)
    caches = net.new_caches()
    steps = [net.decode(tgt[:, t : t + 1], memory, caches=caches) for t in range(6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), one_pass, atol=1e-5, rtol=1e-4)


def test_a_prebuilt_config_builds_the_same_network_as_flat_settings() -> None:
    flat_kwargs = dict(d_model=D, n_heads=H, dropout=0.0, pos="rope", attn_window=4)
    config = DecoderOnly.check_arguments(flat_kwargs)
    torch.manual_seed(0)
    flat = DecoderOnly(50, n_layers=2, **flat_kwargs)
    torch.manual_seed(0)
    built = DecoderOnly(50, n_layers=2, config=config)
    assert built.config is config
    for (name, a), (_, b) in zip(
        flat.state_dict().items(), built.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    with pytest.raises(TypeError, match="not both"):
        DecoderOnly(50, config=config, d_model=64)


def test_a_subclass_with_star_args_keeps_its_bases_defaults() -> None:
    class Mine(DecoderOnly):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

    config = Mine.check_arguments({"d_model": D, "n_heads": H})
    assert config.d_model == D
    assert Mine.with_defaults({})["pooling"] == "last"
