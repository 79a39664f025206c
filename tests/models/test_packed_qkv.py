"""The packed q|k|v projection: one matmul, and checkpoints with separate q/k/v still load."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab.models import DecoderOnly, EncoderDecoder, EncoderOnly, MultiHeadAttention
from attnlab.models.attention import PackedLinear, pack_qkv
from attnlab.models.init import gpt2_init, xavier_init


def unpacked(state: dict[str, torch.Tensor], attn: MultiHeadAttention, prefix: str = "") -> None:
    """Rewrite `state` as the checkpoints before packing held it: q_proj, k_proj, v_proj."""
    for kind in ("weight", "bias"):
        packed = state.pop(f"{prefix}qkv_proj.{kind}", None)
        if packed is None:
            continue
        parts = packed.split([attn.q_width, attn.kv_width, attn.kv_width])
        for name, part in zip(("q_proj", "k_proj", "v_proj"), parts, strict=True):
            state[f"{prefix}{name}.{kind}"] = part.clone()


@pytest.mark.parametrize("n_kv_heads, bias", [(None, True), (2, False), (1, True)])
def test_separate_projections_load_into_the_packed_one(n_kv_heads: int | None, bias: bool) -> None:
    old = MultiHeadAttention.from_arguments(32, 4, bias=bias, n_kv_heads=n_kv_heads).eval()
    state = old.state_dict()
    unpacked(state, old)
    assert not any(key.startswith("qkv_proj") for key in state)
    new = MultiHeadAttention.from_arguments(32, 4, bias=bias, n_kv_heads=n_kv_heads).eval()
    new.load_state_dict(state)  # strict: nothing missing, nothing unexpected
    x, memory = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    torch.testing.assert_close(new(x, causal=True), old(x, causal=True))
    torch.testing.assert_close(new(x, memory), old(x, memory))


def test_whole_networks_load_state_dicts_with_separate_projections() -> None:
    small = dict(d_model=32, n_heads=4, dropout=0.0)
    builders = [
        lambda: DecoderOnly(40, n_layers=2, n_kv_heads=2, **small),
        lambda: EncoderDecoder(40, n_encoder_layers=1, n_decoder_layers=1, **small),
        lambda: EncoderOnly(40, n_layers=2, **small),
    ]
    for build in builders:
        model = build()
        state = model.state_dict()
        for name, module in model.named_modules():
            if isinstance(module, MultiHeadAttention):
                unpacked(state, module, f"{name}.")
        fresh = build()
        fresh.load_state_dict(state)
        for key, value in model.state_dict().items():
            torch.testing.assert_close(fresh.state_dict()[key], value, msg=key)


def test_pack_qkv_converts_a_whole_state_dict_in_place() -> None:
    q, k, v = torch.randn(8, 8), torch.randn(4, 8), torch.randn(4, 8)
    state = {"a.q_proj.weight": q, "a.k_proj.weight": k, "a.v_proj.weight": v, "b.x": q}
    pack_qkv(state)
    assert sorted(state) == ["a.qkv_proj.weight", "b.x"]
    assert torch.equal(state["a.qkv_proj.weight"], torch.cat([q, k, v]))


def test_bert_body_with_separate_projections_loads() -> None:
    old = EncoderOnly(40, d_model=32, n_heads=4, n_layers=2, dropout=0.0).eval()
    state = old.state_dict()
    for i, layer in enumerate(old.layers):
        unpacked(state, layer.self_attn, f"layers.{i}.self_attn.")
    new = EncoderOnly(40, d_model=32, n_heads=4, n_layers=2, dropout=0.0).eval()
    new.load_body_state_dict(state)
    ids = torch.randint(40, (2, 9))
    torch.testing.assert_close(new(ids), old(ids))


def test_self_attention_projects_in_one_matmul(monkeypatch: pytest.MonkeyPatch) -> None:
    mha = MultiHeadAttention.from_arguments(16, 4, n_kv_heads=2)
    shapes: list[tuple[int, ...]] = []
    linear = F.linear

    def recording(x: torch.Tensor, weight: torch.Tensor, bias=None) -> torch.Tensor:
        shapes.append(tuple(weight.shape))
        return linear(x, weight, bias)

    monkeypatch.setattr(F, "linear", recording)
    mha(torch.randn(2, 5, 16), causal=True)
    assert shapes == [(16 + 2 * 8, 16), (16, 16)]  # [q | k | v], then the output projection
    shapes.clear()
    mha(torch.randn(2, 5, 16), torch.randn(2, 3, 16))
    assert shapes == [(16, 16), (2 * 8, 16), (16, 16)]  # q; k and v together; output


@pytest.mark.parametrize("init", ["gpt2", "xavier"])
def test_packed_init_draws_what_separate_matrices_drew(init: str) -> None:
    """Same seed, same weights as the q_proj, k_proj, v_proj of before packing: each block
    initialised as its own matrix (xavier's bound from its own shape), in q, k, v order."""
    D, kv = 32, 16
    packed = PackedLinear(D, [D, kv, kv])
    separate = [nn.Linear(D, rows) for rows in (D, kv, kv)]
    initialise = gpt2_init if init == "gpt2" else xavier_init(D)
    torch.manual_seed(3)
    initialise(packed)
    torch.manual_seed(3)
    for linear in separate:
        initialise(linear)
    torch.testing.assert_close(packed.weight, torch.cat([m.weight for m in separate]))
    torch.testing.assert_close(packed.bias, torch.cat([m.bias for m in separate]))
