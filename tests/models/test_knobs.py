"""Architecture knobs: RoPE, ALiBi, grouped-query attention, QK-norm, SwiGLU; each against its
definition or an independent construction, with fresh random inputs."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from attnlab.models import DecoderOnly, EncoderDecoder, EncoderOnly
from attnlab.models.alibi import alibi_bias, alibi_slopes
from attnlab.models.attention import MultiHeadAttention, attention_reference
from attnlab.models.feedforward import FeedForward, SwiGLUFeedForward, build_feedforward
from attnlab.models.rotary import RotaryEmbedding
from tests.models.conftest import project_qkv


def test_rope_scores_depend_only_on_relative_position() -> None:
    rope = RotaryEmbedding(d_head=16)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(m: int, n: int) -> torch.Tensor:
        return (rope(q, start=m) * rope(k, start=n)).sum()

    for m, n in [(0, 0), (5, 2), (2, 5), (17, 9)]:
        for shift in (1, 7, 40):
            torch.testing.assert_close(score(m, n), score(m + shift, n + shift))
    assert not torch.allclose(score(5, 2), score(5, 3))  # but it does depend on m - n


def test_rope_is_a_rotation_of_each_channel_pair() -> None:
    d_head, position = 8, 3
    x = torch.randn(2, 3, 1, d_head)
    out = RotaryEmbedding(d_head)(x, start=position)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))  # rotations keep length
    for i in range(d_head // 2):  # channel pair (i, i + d/2) turned by position * 10000^(-2i/d)
        angle = position * 10000 ** (-2 * i / d_head)
        a, b = x[..., i], x[..., i + d_head // 2]
        torch.testing.assert_close(out[..., i], a * math.cos(angle) - b * math.sin(angle))
        torch.testing.assert_close(
            out[..., i + d_head // 2], b * math.cos(angle) + a * math.sin(angle)
        )
    torch.testing.assert_close(RotaryEmbedding(d_head)(x, start=0), x)  # position 0: identity


def test_alibi_slopes_are_the_published_ones() -> None:
    # Press et al. (2022): 8 heads -> 1/2, 1/4, ..., 1/256.
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0**-i for i in range(1, 9)]))
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]))
    # Not a power of two (the authors' code): 8 heads' slopes, then every other one of 16's.
    sixteen = [2.0 ** (-0.5 * i) for i in range(1, 17)]
    expected = [2.0**-i for i in range(1, 9)] + sixteen[0::2][:4]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(expected))


def test_alibi_attention_adds_minus_slope_times_distance() -> None:
    torch.manual_seed(0)
    B, T, D, H = 2, 6, 16, 4
    attn = MultiHeadAttention.from_arguments(D, H, relative_pos="alibi").eval()
    x = torch.randn(B, T, D)
    out = attn(x, causal=True)

    q, k, v = (attn._split_heads(t) for t in project_qkv(attn, x))
    scores = q @ k.transpose(-2, -1) / math.sqrt(D // H)
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    slopes = torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8])  # the paper's, for 4 heads
    scores = scores - slopes[:, None, None] * (i - j)  # the paper's bias on keys j <= i
    scores = scores.masked_fill(j > i, float("-inf"))
    expected = attn.out_proj(attn._merge_heads(scores.softmax(-1) @ v))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # Bidirectional: symmetric distance.
    bias = alibi_bias(alibi_slopes(H), T, T)
    torch.testing.assert_close(bias, bias.transpose(-2, -1))


def test_gqa_with_kv_heads_equal_to_heads_is_multi_head_attention() -> None:
    torch.manual_seed(0)
    plain, grouped = (
        MultiHeadAttention.from_arguments(32, 4),
        MultiHeadAttention.from_arguments(32, 4, n_kv_heads=4),
    )
    grouped.load_state_dict(plain.state_dict())
    x, pad = torch.randn(2, 7, 32), torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 5:] = True
    torch.testing.assert_close(grouped(x, key_padding_mask=pad), plain(x, key_padding_mask=pad))


@pytest.mark.parametrize("n_kv_heads", [1, 2])
def test_gqa_equals_multi_head_attention_with_shared_key_value_heads(n_kv_heads: int) -> None:
    """Independent construction: plain attention whose K/V projections repeat the groups' rows."""
    torch.manual_seed(0)
    D, H = 32, 4
    d_head, group = D // H, H // n_kv_heads
    grouped = MultiHeadAttention.from_arguments(D, H, n_kv_heads=n_kv_heads).eval()
    assert grouped.qkv_proj.out_features == (H + 2 * n_kv_heads) * d_head
    plain = MultiHeadAttention.from_arguments(D, H).eval()
    with torch.no_grad():
        plain.out_proj.load_state_dict(grouped.out_proj.state_dict())
        # Packed rows [q | k | v]: q as it is; query head h uses key/value head h // group.
        rows = torch.arange(H * d_head).view(H, d_head)
        kv_rows = (rows // (group * d_head)) * d_head + rows % d_head
        k_rows = D + kv_rows.flatten()
        source_rows = torch.cat([torch.arange(D), k_rows, k_rows + n_kv_heads * d_head])
        plain.qkv_proj.weight.copy_(grouped.qkv_proj.weight[source_rows])
        plain.qkv_proj.bias.copy_(grouped.qkv_proj.bias[source_rows])
    x = torch.randn(3, 9, D)
    torch.testing.assert_close(grouped(x, causal=True), plain(x, causal=True))


def test_qk_norm_normalises_each_head_before_the_scores() -> None:
    torch.manual_seed(0)
    D, H = 16, 2
    attn = MultiHeadAttention.from_arguments(D, H, qk_norm=True).eval()
    with torch.no_grad():
        attn.q_norm.weight.copy_(torch.rand(D // H) + 0.5)
        attn.k_norm.weight.copy_(torch.rand(D // H) + 0.5)
    x = torch.randn(2, 5, D) * 10  # large activations: the norm is what keeps scores bounded

    def rms(t: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        return t / torch.sqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6) * gain

    q, k, v = (attn._split_heads(t) for t in project_qkv(attn, x))
    q, k = rms(q, attn.q_norm.weight), rms(k, attn.k_norm.weight)
    expected = attn.out_proj(attn._merge_heads(attention_reference(q, k, v, is_causal=True)))
    torch.testing.assert_close(attn(x, causal=True), expected, atol=1e-5, rtol=1e-5)


def test_swiglu_formula_and_parameter_count() -> None:
    torch.manual_seed(0)
    d_model, d_ff = 24, 96
    ffn = SwiGLUFeedForward(d_model, d_ff).eval()
    x = torch.randn(2, 3, d_model)
    expected = ffn.linear2(nn.functional.silu(ffn.gate(x)) * ffn.linear1(x))
    torch.testing.assert_close(ffn(x), expected)
    hidden = 2 * d_ff // 3  # 64
    assert ffn.linear1.out_features == ffn.gate.out_features == hidden
    count = sum(p.numel() for p in ffn.parameters())
    assert count == 3 * d_model * hidden + 2 * hidden + d_model
    plain = sum(p.numel() for p in FeedForward(d_model, d_ff).parameters())
    assert abs(count - plain) / plain < 0.01  # comparable to the plain network it replaces
    with pytest.raises(ValueError, match=r"'swish'.*'relu', 'gelu', 'gelu_tanh', 'swiglu'"):
        build_feedforward("swish", d_model, d_ff)


def test_position_free_encoders_are_refused() -> None:
    for build in (
        lambda: EncoderOnly(20, 16, 2, 1, pos="none"),
        lambda: EncoderDecoder(20, 16, 2, 1, 1, 32, pos="none"),
    ):
        with pytest.raises(ValueError, match="pos='none' is for decoder-only"):
            build()


@pytest.mark.parametrize("pos", ["rope", "alibi"])
def test_relative_positions_keep_the_decoder_causal(pos: str) -> None:
    torch.manual_seed(0)
    model = DecoderOnly(30, 16, 4, 2, max_len=10, pos=pos).eval()
    tokens = torch.randint(30, (1, 10))
    changed = tokens.clone()
    changed[0, 6:] = (changed[0, 6:] + 1) % 30
    torch.testing.assert_close(model(tokens)[:, :6], model(changed)[:, :6])
    assert not torch.allclose(model(tokens)[:, 6:], model(changed)[:, 6:])


POSITIONS = ["sinusoidal", "learned", "rope", "alibi", "none"]
ARCHITECTURES = {
    "gpt": lambda V, T, **k: DecoderOnly(V, 16, 4, 1, max_len=T, **k),
    "bert": lambda V, T, **k: EncoderOnly(V, 16, 4, 1, max_len=T, num_classes=2, **k),
    "encdec": lambda V, T, **k: EncoderDecoder(V, 16, 4, 1, 1, 32, max_len=T, **k),
}


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_every_knob_combination_builds_and_trains_a_step(architecture: str) -> None:
    """The full product of positions x norm x norm placement x feed-forward x attention x tying."""
    torch.manual_seed(0)
    V, T = 20, 6
    tokens = torch.randint(1, V, (2, T))
    pad = torch.zeros(2, T, dtype=torch.bool)
    pad[0, 4:] = True
    positions = POSITIONS if architecture == "gpt" else POSITIONS[:-1]
    combinations = list(
        itertools.product(
            positions,
            ["layernorm", "rmsnorm"],
            [False, True],
            ["relu", "gelu", "swiglu"],
            [{}, {"n_kv_heads": 2, "qk_norm": True}],
            [False, True],
        )
    )
    for pos, norm, norm_first, activation, attention, tie in combinations:
        knobs = dict(pos=pos, norm=norm, norm_first=norm_first, activation=activation)
        model = ARCHITECTURES[architecture](V, T, tie_output=tie, **knobs, **attention)
        if architecture == "gpt":
            out = model(tokens)
        elif architecture == "bert":
            out = model.classify(tokens, pad)
        else:
            out = model(tokens, tokens, pad, pad)
        loss = out.pow(2).mean()
        loss.backward()
        # Every block parameter takes part (the unused MLM head of a classifier would not).
        blocks = [p.grad for n, p in model.named_parameters() if ".layers." in f".{n}"]
        assert blocks and all(g is not None and torch.isfinite(g).all() for g in blocks), (
            knobs,
            attention,
            tie,
        )
