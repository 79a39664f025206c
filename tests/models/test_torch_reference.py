"""Our modules reproduce torch.nn's independent implementations given the same weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnlab.models import EncoderDecoder, MultiHeadAttention, TransformerBlock

pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor:UserWarning")


@torch.no_grad()
def copy_attention(ref: nn.MultiheadAttention, ours: MultiHeadAttention) -> None:
    """nn.MultiheadAttention packs q, k, v projections into one in_proj matrix."""
    ref.in_proj_weight.copy_(ours.qkv_proj.weight)  # the same [q | k | v] layout
    if ref.in_proj_bias is not None:
        ref.in_proj_bias.copy_(ours.qkv_proj.bias)
    ref.out_proj.load_state_dict(ours.out_proj.state_dict())


def copy_block(ref: nn.Module, block: TransformerBlock) -> None:
    """Into nn.TransformerEncoderLayer (no cross-attention) or nn.TransformerDecoderLayer."""
    copy_attention(ref.self_attn, block.self_attn)
    if block.cross_attn is not None:
        copy_attention(ref.multihead_attn, block.cross_attn)
    ref.linear1.load_state_dict(block.ffn.linear1.state_dict())
    ref.linear2.load_state_dict(block.ffn.linear2.state_dict())
    for name in ("norm1", "norm2", "norm3"):
        if getattr(block, name, None) is not None:
            getattr(ref, name).load_state_dict(getattr(block, name).state_dict())


@torch.no_grad()
def perturb(module: nn.Module) -> None:
    """Move every parameter off its init (e.g. LayerNorm 1/0, zero biases) so all of them matter."""
    for p in module.parameters():
        p.add_(0.1 * torch.randn_like(p))


def causal_mask_for_torch(t: int) -> torch.Tensor:
    return torch.ones(t, t, dtype=torch.bool).triu(1)  # torch.nn: True = may NOT attend


def right_padding(lengths: list[int], t: int) -> torch.Tensor:
    return torch.arange(t)[None, :] >= torch.tensor(lengths)[:, None]  # (B, T), True = pad


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", ["self", "cross", "padding", "causal", "causal+padding"])
def test_attention_matches_torch(case: str, bias: bool) -> None:
    B, D, H = 3, 16, 4
    tq = 5
    tk = 7 if case == "cross" else tq
    ours = MultiHeadAttention.from_arguments(D, H, bias=bias).double()
    ref = nn.MultiheadAttention(D, H, bias=bias, batch_first=True).double()
    copy_attention(ref, ours)

    query = torch.randn(B, tq, D, dtype=torch.float64)
    kv = torch.randn(B, tk, D, dtype=torch.float64) if case == "cross" else query
    causal = "causal" in case
    pad = None
    allowed = torch.ones(B, tq, tk, dtype=torch.bool)
    if "padding" in case:
        pad = torch.rand(B, tk) < 0.3
        pad[1, :2] = True  # left padding: fully masked rows when causal
        pad[2] = True  # a sequence that is all padding
        allowed &= ~pad[:, None, :]
    if causal:
        allowed &= torch.ones(tq, tk, dtype=torch.bool).tril()

    out = ours(query, None if case != "cross" else kv, key_padding_mask=pad, causal=causal)
    expected, _ = ref(
        query,
        kv,
        kv,
        key_padding_mask=pad,
        attn_mask=causal_mask_for_torch(tq) if causal else None,
        need_weights=False,
    )
    # torch.nn leaves rows with no visible key undefined (NaN); ours zeroes them on purpose.
    valid = allowed.any(-1)  # (B, Tq)
    assert valid.any()
    torch.testing.assert_close(out[valid], expected[valid])


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_encoder_block_matches_torch(norm_first: bool, activation: str) -> None:
    D, H, d_ff = 16, 4, 32
    block = TransformerBlock.from_arguments(D, H, d_ff, 0.0, activation, norm_first).double()
    ref = nn.TransformerEncoderLayer(
        D, H, d_ff, 0.0, activation, batch_first=True, norm_first=norm_first
    ).double()
    perturb(block)
    copy_block(ref, block)

    x = torch.randn(3, 6, D, dtype=torch.float64)
    pad = right_padding([6, 4, 1], 6)
    torch.testing.assert_close(block(x, padding_mask=pad), ref(x, src_key_padding_mask=pad))


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_decoder_block_matches_torch(norm_first: bool, activation: str) -> None:
    D, H, d_ff = 16, 4, 32
    block = TransformerBlock.from_arguments(
        D, H, d_ff, 0.0, activation, norm_first, cross_attention=True
    )
    block = block.double()
    ref = nn.TransformerDecoderLayer(
        D, H, d_ff, 0.0, activation, batch_first=True, norm_first=norm_first
    ).double()
    perturb(block)
    copy_block(ref, block)

    x = torch.randn(3, 5, D, dtype=torch.float64)
    memory = torch.randn(3, 7, D, dtype=torch.float64)
    pad, memory_pad = right_padding([5, 3, 2], 5), right_padding([7, 2, 5], 7)
    out = block(x, padding_mask=pad, causal=True, memory=memory, memory_padding_mask=memory_pad)
    expected = ref(
        x,
        memory,
        tgt_mask=causal_mask_for_torch(5),
        tgt_key_padding_mask=pad,
        memory_key_padding_mask=memory_pad,
    )
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize(
    ("norm_first", "activation", "bias"),
    [(False, "relu", True), (False, "gelu", True), (True, "relu", True), (True, "gelu", False)],
)
def test_encoder_decoder_matches_torch_transformer(
    norm_first: bool, activation: str, bias: bool
) -> None:
    V, D, H, d_ff, n_layers = 13, 16, 4, 32, 2
    model = EncoderDecoder(
        V,
        D,
        H,
        n_layers,
        n_layers,
        d_ff,
        dropout=0.0,
        activation=activation,
        norm_first=norm_first,
        bias=bias,
    ).double()
    ref = nn.Transformer(
        D,
        H,
        n_layers,
        n_layers,
        d_ff,
        dropout=0.0,
        activation=activation,
        batch_first=True,
        norm_first=norm_first,
        bias=bias,
    ).double()
    perturb(model)
    for ours_layer, ref_layer in zip(model.encoder.layers, ref.encoder.layers, strict=True):
        copy_block(ref_layer, ours_layer)
    for ours_layer, ref_layer in zip(model.decoder.layers, ref.decoder.layers, strict=True):
        copy_block(ref_layer, ours_layer)
    if norm_first:
        ref.encoder.norm.load_state_dict(model.encoder.norm.state_dict())
        ref.decoder.norm.load_state_dict(model.decoder.norm.state_dict())
    else:
        # The paper's post-LN model has no final norm; nn.Transformer always adds one.
        assert isinstance(model.encoder.norm, nn.Identity)
        ref.encoder.norm, ref.decoder.norm = nn.Identity(), nn.Identity()

    src, tgt = torch.randint(V, (3, 7)), torch.randint(V, (3, 5))
    src_pad, tgt_pad = right_padding([7, 4, 2], 7), right_padding([5, 5, 3], 5)
    logits = model(src, tgt, src_padding_mask=src_pad, tgt_padding_mask=tgt_pad)

    # The reference gets our embeddings (dropout is 0) and our output projection.
    src_x, tgt_x = model.pos(model.src_embed(src)), model.pos(model.tgt_embed(tgt))
    hidden = ref(
        src_x,
        tgt_x,
        tgt_mask=causal_mask_for_torch(5),
        src_key_padding_mask=src_pad,
        tgt_key_padding_mask=tgt_pad,
        memory_key_padding_mask=src_pad,
    )
    assert logits.shape == (3, 5, V)
    torch.testing.assert_close(logits, model.lm_head(hidden))

    memory = model.encode(src, src_pad)
    expected_memory = ref.encoder(src_x, src_key_padding_mask=src_pad)
    torch.testing.assert_close(memory[~src_pad], expected_memory[~src_pad])
