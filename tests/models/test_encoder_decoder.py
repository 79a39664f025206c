"""EncoderDecoder: masking behaviour, weight tying, parameter counts, init, and errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attnlab.models import EncoderDecoder, MultiHeadAttention
from attnlab.models.parameters import count_parameters

V = 17  # vocabulary of the small models below


def small_model(**overrides) -> EncoderDecoder:
    config = dict(vocab_size=V, d_model=16, n_heads=4, d_ff=32, max_len=32) | overrides
    return EncoderDecoder(**config).eval()


def right_padding(lengths: list[int], t: int) -> torch.Tensor:
    return torch.arange(t)[None, :] >= torch.tensor(lengths)[:, None]  # (B, T), True = pad


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_ignores_padding(norm_first: bool) -> None:
    model = small_model(norm_first=norm_first)
    src = torch.randint(V, (3, 6))
    pad = right_padding([6, 4, 2], 6)
    memory = model.encode(src, pad)  # (B, S, D)

    # More padding appended at the end.
    longer = torch.cat([src, torch.randint(V, (3, 3))], dim=1)
    longer_pad = torch.cat([pad, torch.ones(3, 3, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(model.encode(longer, longer_pad)[:, :6][~pad], memory[~pad])

    # Different tokens at the padded positions.
    scrambled = src.masked_scatter(pad, torch.randint(V, (int(pad.sum()),)))
    assert not torch.equal(scrambled, src)
    torch.testing.assert_close(model.encode(scrambled, pad)[~pad], memory[~pad])


def test_decoder_ignores_source_padding() -> None:
    model = small_model()
    src, tgt = torch.randint(V, (2, 5)), torch.randint(V, (2, 4))
    src_pad = right_padding([5, 3], 5)
    logits = model(src, tgt, src_padding_mask=src_pad)

    longer = torch.cat([src, torch.randint(V, (2, 4))], dim=1)
    longer_pad = torch.cat([src_pad, torch.ones(2, 4, dtype=torch.bool)], dim=1)
    longer[longer_pad] = torch.randint(V, (int(longer_pad.sum()),))
    torch.testing.assert_close(model(longer, tgt, src_padding_mask=longer_pad), logits)

    # Without the mask the padding tokens do change the result.
    assert not torch.allclose(model(longer, tgt), logits)


def test_decoder_ignores_future_targets() -> None:
    model = small_model()
    src, tgt = torch.randint(V, (2, 5)), torch.randint(V, (2, 6))
    memory = model.encode(src)
    changed = tgt.clone()
    changed[:, 3:] = (tgt[:, 3:] + 1) % V
    logits, logits_changed = model.decode(tgt, memory), model.decode(changed, memory)
    torch.testing.assert_close(logits[:, :3], logits_changed[:, :3])
    assert not torch.allclose(logits[:, 3:], logits_changed[:, 3:])


def test_decoder_uses_the_source() -> None:
    model = small_model()
    tgt = torch.randint(V, (2, 4))
    a, b = model(torch.randint(V, (2, 5)), tgt), model(torch.randint(V, (2, 5)), tgt)
    assert not torch.allclose(a, b)


def test_fully_padded_source_has_finite_gradients() -> None:
    model = small_model(dropout=0.0).train()
    src, tgt = torch.randint(V, (2, 5)), torch.randint(V, (2, 4))
    src_pad = right_padding([5, 0], 5)  # the second source is all padding
    logits = model(src, tgt, src_padding_mask=src_pad)
    assert torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_output_shapes_with_separate_target_vocabulary() -> None:
    model = small_model(tgt_vocab_size=9, share_embeddings=False)
    logits = model(torch.randint(V, (2, 5)), torch.randint(9, (2, 3)))
    assert logits.shape == (2, 3, 9)
    assert model.src_embed.embedding.num_embeddings == V
    assert model.lm_head.weight is model.tgt_embed.embedding.weight


def test_shared_and_tied_weights() -> None:
    model = small_model()
    assert model.src_embed is model.tgt_embed
    assert model.lm_head.weight is model.tgt_embed.embedding.weight


def test_untied_weights_are_separate() -> None:
    model = small_model(share_embeddings=False, tie_output=False)
    assert model.src_embed.embedding.weight is not model.tgt_embed.embedding.weight
    assert model.lm_head.weight is not model.tgt_embed.embedding.weight
    assert model.lm_head.bias is None


@pytest.mark.parametrize("share", [True, False])
@pytest.mark.parametrize("tie", [True, False])
def test_num_parameters_counts_tied_once(share: bool, tie: bool) -> None:
    D, F, n_enc, n_dec = 8, 20, 2, 1
    model = EncoderDecoder(V, D, 2, n_enc, n_dec, F, share_embeddings=share, tie_output=tie)
    attention = 4 * (D * D + D)
    ffn = D * F + F + F * D + D
    layernorm = 2 * D
    body = n_enc * (attention + ffn + 2 * layernorm) + n_dec * (2 * attention + ffn + 3 * layernorm)
    embeddings = V * D * (1 if share else 2)
    head = 0 if tie else V * D
    assert count_parameters(model)["total"] == body + embeddings + head
    assert count_parameters(model)["non_embedding"] == body + head


def test_num_parameters_learned_positions_and_final_norms() -> None:
    D = 8
    base = EncoderDecoder(V, D, 2, 1, 1, 16, norm_first=True, max_len=10)
    learned = EncoderDecoder(V, D, 2, 1, 1, 16, norm_first=True, max_len=10, pos="learned")
    assert count_parameters(learned)["total"] == count_parameters(base)["total"] + 10 * D
    assert count_parameters(learned)["non_embedding"] == count_parameters(base)["non_embedding"]
    no_final = EncoderDecoder(V, D, 2, 1, 1, 16, norm_first=True, final_norm=False)
    assert count_parameters(base)["total"] == count_parameters(no_final)["total"] + 2 * (2 * D)


@pytest.mark.parametrize(("norm_first", "final_norm"), [(False, None), (True, None), (False, True)])
def test_final_norm(norm_first: bool, final_norm: bool | None) -> None:
    model = small_model(norm_first=norm_first, final_norm=final_norm)
    expected = nn.LayerNorm if (norm_first if final_norm is None else final_norm) else nn.Identity
    assert isinstance(model.encoder.norm, expected)
    assert isinstance(model.decoder.norm, expected)


def test_init() -> None:
    D = 64
    model = EncoderDecoder(1000, D, 4, 1, 1, 128)
    std = model.src_embed.embedding.weight.std().item()
    assert std == pytest.approx(D**-0.5, rel=0.05)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module is not model.lm_head:
            # The packed q|k|v projection: each block its own matrix, as before packing.
            attention = model.get_submodule(name.removesuffix(".qkv_proj"))
            packed = isinstance(attention, MultiHeadAttention)
            for weight in attention.qkv_weights() if packed else [module.weight]:
                fan_out, fan_in = weight.shape
                assert weight.abs().max() <= math.sqrt(6 / (fan_in + fan_out)), name
            if packed:  # and not all within a packed matrix's smaller bound
                assert module.weight.abs().max() > math.sqrt(6 / sum(module.weight.shape)), name
            assert module.bias is None or torch.all(module.bias == 0), name


def test_embeddings_scaled_positioned_and_dropped_out() -> None:
    # With no encoder layers (and no final norm) the memory is just the embedded source.
    model = small_model(n_encoder_layers=0, dropout=0.5).train()
    src = torch.randint(V, (2, 6))
    memory = model.encode(src)  # (B, S, D)
    embedded = model.src_embed.embedding.weight[src] * 4.0 + model.pos.pe[:6]  # sqrt(16) = 4
    kept = memory != 0
    assert 0 < kept.float().mean() < 1
    torch.testing.assert_close(memory[kept], 2.0 * embedded[kept])  # inverted dropout, p=0.5


def test_supported_tasks() -> None:
    assert EncoderDecoder.supported_tasks == ("seq2seq", "classification")


def test_heads_must_divide_d_model() -> None:
    with pytest.raises(ValueError, match=r"d_model \(30\).*n_heads \(4\)"):
        EncoderDecoder(V, d_model=30, n_heads=4)


def test_shared_embeddings_need_one_vocabulary() -> None:
    with pytest.raises(ValueError, match=r"vocab_size=17.*tgt_vocab_size=9"):
        EncoderDecoder(V, tgt_vocab_size=9, share_embeddings=True)


@pytest.mark.parametrize(
    ("option", "value", "choices"),
    [
        ("activation", "swish", "'relu', 'gelu', 'gelu_tanh', 'swiglu'"),
        ("pos", "rotary", "'sinusoidal', 'learned', 'rope', 'alibi', 'none'"),
        ("norm", "batchnorm", "'layernorm', 'rmsnorm'"),
    ],
)
def test_unknown_names_list_choices(option: str, value: str, choices: str) -> None:
    with pytest.raises(ValueError, match=f"'{value}'.*{choices}"):
        small_model(**{option: value})


def test_too_long_source_is_a_clear_error() -> None:
    model = small_model(max_len=8)
    with pytest.raises(ValueError, match="max_len=8"):
        model.encode(torch.randint(V, (1, 9)))
