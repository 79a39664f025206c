"""DecoderOnly: causality, padding, tying, parameter counts, FLOPs, GPT-2 init, generation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab.models import DecoderOnly, TokenEmbedding, TransformerBlock
from attnlab.models.parameters import count_parameters

V = 19  # vocabulary of the small models below


def small_model(**overrides) -> DecoderOnly:
    config = dict(vocab_size=V, d_model=16, n_heads=4, n_layers=2, max_len=32) | overrides
    return DecoderOnly(**config).eval()


@pytest.mark.parametrize("norm_first", [True, False])
def test_changing_a_token_changes_no_earlier_logits(norm_first: bool) -> None:
    model = small_model(norm_first=norm_first)
    idx = torch.randint(V, (2, 10))
    logits = model(idx)
    for t in (0, 4, 9):
        changed = idx.clone()
        changed[:, t] = (idx[:, t] + 1) % V
        logits_changed = model(changed)
        torch.testing.assert_close(logits_changed[:, :t], logits[:, :t])
        assert not torch.allclose(logits_changed[:, t:], logits[:, t:])


def test_left_padding_is_ignored() -> None:
    model = small_model()
    idx = torch.randint(V, (2, 8))
    pad = torch.zeros(2, 8, dtype=torch.bool)
    pad[1, :3] = True
    logits = model(idx, padding_mask=pad)
    scrambled = idx.clone()
    scrambled[1, :3] = (idx[1, :3] + 1) % V
    torch.testing.assert_close(model(scrambled, padding_mask=pad)[~pad], logits[~pad])
    # Without the mask the padding tokens do change the result.
    assert not torch.allclose(model(scrambled)[1, 3:], logits[1, 3:])


def test_layout() -> None:
    model = small_model(n_layers=3)
    assert DecoderOnly.supported_tasks == ("causal_lm", "seq2seq", "classification")
    assert isinstance(model.tok_embed, TokenEmbedding) and model.tok_embed.scale == 1.0
    assert model.max_len == 32 and model.pos.max_len == 32
    assert isinstance(model.dropout, nn.Dropout)
    assert len(model.layers) == 3
    for layer in model.layers:
        assert isinstance(layer, TransformerBlock)
        assert layer.cross_attn is None and layer.norm_first
        assert layer.ffn.linear1.out_features == 4 * 16  # d_ff defaults to 4 d_model
        assert isinstance(layer.ffn.activation, nn.GELU)
    assert isinstance(model.norm, nn.LayerNorm)
    assert model.lm_head.bias is None
    assert model(torch.randint(V, (2, 5))).shape == (2, 5, V)


def test_post_ln_has_no_final_norm() -> None:
    model = small_model(norm_first=False, d_ff=24)
    assert isinstance(model.norm, nn.Identity)
    assert not model.layers[0].norm_first
    assert model.layers[0].ffn.linear1.out_features == 24


def test_output_tied_to_embedding() -> None:
    tied, untied = small_model(), small_model(tie_output=False)
    assert tied.lm_head.weight is tied.tok_embed.weight
    assert untied.lm_head.weight is not untied.tok_embed.weight
    names = {name for name, _ in tied.named_parameters()}
    assert "lm_head.weight" not in names  # named_parameters yields a shared tensor once


def test_bias_false_removes_every_bias() -> None:
    model = small_model(bias=False)
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.LayerNorm)):
            assert module.bias is None, name
    assert all("bias" not in name for name, _ in model.named_parameters())


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("tie", [True, False])
def test_parameter_count_formula(bias: bool, tie: bool) -> None:
    D, F_, L, T_max = 8, 20, 3, 12
    model = DecoderOnly(V, D, 2, L, F_, max_len=T_max, bias=bias, tie_output=tie)
    b = int(bias)
    attention = 4 * (D * D + b * D)
    ffn = D * F_ + b * F_ + F_ * D + b * D
    layernorm = D + b * D
    body = L * (attention + ffn + 2 * layernorm) + layernorm  # + the final norm
    embeddings = V * D + T_max * D  # tokens and learned positions
    head = 0 if tie else V * D
    counts = count_parameters(model)
    assert counts["total"] == body + embeddings + head
    assert counts["non_embedding"] == body + head

    # FLOPs count the head's matmul whether or not it is tied (nanoGPT's estimate_mfu).
    for seq_len in (1, 64):
        expected = 6 * (body + V * D) + 12 * L * D * seq_len
        assert model.flops_per_token(seq_len) == expected


def test_sinusoidal_positions_have_no_parameters() -> None:
    learned, fixed = small_model(), small_model(pos="sinusoidal")
    assert count_parameters(learned)["total"] - count_parameters(fixed)["total"] == 32 * 16


def test_gpt2_initialisation() -> None:
    L, D = 8, 128
    model = DecoderOnly(1000, D, 4, L, max_len=64)
    residual_std = 0.02 / math.sqrt(2 * L)  # = 0.005
    residual = set()
    for layer in model.layers:
        for linear in (layer.self_attn.out_proj, layer.ffn.linear2):
            residual.add(linear.weight)
            assert linear.weight.std().item() == pytest.approx(residual_std, rel=0.05)
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)) and module.weight not in residual:
            assert module.weight.std().item() == pytest.approx(0.02, rel=0.05), name
            assert module.weight.mean().abs().item() < 0.002, name
        if isinstance(module, nn.Linear) and module.bias is not None:
            assert torch.all(module.bias == 0), name
        if isinstance(module, nn.LayerNorm):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0), name


def test_embedding_dropout() -> None:
    model = small_model(n_layers=0, dropout=0.5, norm_first=False).train()
    model.lm_head = nn.Identity()  # look at the embedded input itself
    idx = torch.randint(V, (2, 6))
    out = model(idx)  # (B, T, D)
    embedded = model.tok_embed.weight[idx] + model.pos.embedding.weight[:6]
    kept = out != 0
    assert 0 < kept.float().mean() < 1
    torch.testing.assert_close(out[kept], 2.0 * embedded[kept])  # inverted dropout, p=0.5


def test_too_long_sequence_is_a_clear_error() -> None:
    model = small_model(max_len=8)
    model(torch.randint(V, (1, 8)))  # exactly max_len is fine
    with pytest.raises(ValueError, match="max_len=8"):
        model(torch.randint(V, (1, 9)))
    with pytest.raises(ValueError, match="max_len=8"):
        model(torch.randint(V, (1, 3)), start=6)
    with pytest.raises(ValueError, match="max_len=8"):
        small_model(max_len=8, pos="none")(torch.randint(V, (1, 9)))


def test_heads_must_divide_d_model() -> None:
    with pytest.raises(ValueError, match=r"d_model \(30\).*n_heads \(4\)"):
        DecoderOnly(V, d_model=30, n_heads=4)


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


# ---------------------------------------------------------------------------- generation


def greedy_reference(model: DecoderOnly, prompt: torch.Tensor, n: int) -> torch.Tensor:
    """nanoGPT's loop: full forward on the last max_len tokens, argmax, append."""
    idx = prompt
    for _ in range(n):
        logits = model(idx[:, -model.max_len :])
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("max_len", [32, 8], ids=["fits", "cropped"])
def test_greedy_generation(use_cache: bool, max_len: int) -> None:
    model = small_model(max_len=max_len)
    prompt = torch.randint(V, (3, 5))
    out = model.generate(prompt, 12, temperature=0.0, use_cache=use_cache)
    assert out.shape == (3, 17)
    assert torch.equal(out[:, :5], prompt)
    assert torch.equal(out, greedy_reference(model, prompt, 12))


@pytest.mark.parametrize("max_len", [32, 9], ids=["fits", "cropped"])
@pytest.mark.parametrize(
    "sampling", [dict(temperature=1.0, top_k=5), dict(temperature=0.8, top_p=0.9)]
)
def test_cached_and_uncached_sampling_agree(max_len: int, sampling: dict) -> None:
    model = small_model(max_len=max_len)
    prompt = torch.randint(V, (4, 3))
    outs = [
        model.generate(
            prompt, 15, use_cache=use_cache, generator=torch.Generator().manual_seed(7), **sampling
        )
        for use_cache in (True, False)
    ]
    assert outs[0].shape == (4, 18)
    assert torch.equal(outs[0], outs[1])
    other_seed = model.generate(prompt, 15, generator=torch.Generator().manual_seed(8), **sampling)
    assert not torch.equal(outs[0], other_seed)  # really sampled


def test_cache_is_used_while_the_context_fits() -> None:
    """Prefill once, then one token per forward; past max_len the context is cropped."""
    model = small_model(max_len=6)
    lengths = []
    model.register_forward_pre_hook(lambda _, args: lengths.append(args[0].size(1)))
    model.generate(torch.randint(V, (2, 4)), 5, temperature=0.0)
    assert lengths == [4, 1, 1, 6, 6]  # positions 4 and 5 cached; then the last 6 tokens
    lengths.clear()
    model.generate(torch.randint(V, (2, 4)), 3, temperature=0.0, use_cache=False)
    assert lengths == [4, 5, 6]


def test_generation_stops_at_eos() -> None:
    model = small_model()
    prompt = torch.randint(V, (3, 4))
    free = model.generate(prompt, 10, temperature=0.0)
    eos = int(free[0, 5])  # row 0's second new token: at least row 0 stops early
    out = model.generate(prompt, 10, temperature=0.0, eos_id=eos)

    new_free, new = free[:, 4:], out[:, 4:]
    ends = []
    for row_free, row in zip(new_free, new, strict=True):
        hits = (row_free == eos).nonzero().flatten()
        end = int(hits[0]) + 1 if len(hits) else 10  # tokens up to and including eos
        ends.append(end)
        assert torch.equal(row[:end], row_free[:end])
        assert torch.all(row[end:] == eos)  # finished rows are padded with eos
    assert new.size(1) == max(ends)  # stops once every row has finished


def test_generation_stops_when_all_rows_emit_eos() -> None:
    model = small_model(tie_output=False)
    nn.init.zeros_(model.lm_head.weight)  # all logits equal: argmax is token 0 everywhere
    out = model.generate(torch.randint(1, V, (3, 4)), 10, temperature=0.0, eos_id=0)
    assert out.shape == (3, 5) and torch.all(out[:, -1] == 0)


def test_empty_prompt_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least one token"):
        small_model().generate(torch.zeros(2, 0, dtype=torch.long), 3)


def test_overfits_fixed_sequences() -> None:
    """A tiny model memorises 8 sequences, then greedy generation replays them."""
    n_vocab = 16
    seqs = torch.randint(n_vocab, (8, 16))
    seqs[:, 0] = torch.arange(8)  # distinct first tokens make every continuation unique
    model = DecoderOnly(n_vocab, d_model=32, n_heads=2, n_layers=2, max_len=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    for step in range(400):
        logits = model(seqs[:, :-1])  # (B, T - 1, V)
        loss = F.cross_entropy(logits.reshape(-1, n_vocab), seqs[:, 1:].reshape(-1))
        if step == 0:
            assert loss.item() > 2.0  # started from chance (ln 16 = 2.8)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.01:
            break

    assert loss.item() < 0.01, f"not memorised: loss {loss.item():.4f}"
    model.eval()
    assert torch.equal(model.generate(seqs[:, :1], 15, temperature=0.0), seqs)
