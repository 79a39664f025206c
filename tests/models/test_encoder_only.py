"""EncoderOnly: padding, bidirectionality, pooling, tying, counts, init, body/head split."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab.models import EncoderOnly, TokenEmbedding, TransformerBlock
from attnlab.models.parameters import count_parameters

V = 23  # vocabulary of the small models below


def small_model(**overrides) -> EncoderOnly:
    """A small model in eval mode, its norms and biases moved off their 1/0 init."""
    config = dict(vocab_size=V, d_model=16, n_heads=4, n_layers=2, max_len=32) | overrides
    model = EncoderOnly(**config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def right_padding(lengths: list[int], T: int) -> torch.Tensor:
    """bool (B, T), True at the positions after each row's length."""
    return torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None]


def test_layout() -> None:
    model = EncoderOnly(V, d_model=16, n_heads=4, n_layers=3, max_len=32)
    assert EncoderOnly.supported_tasks == ("masked_lm", "classification")
    assert model.max_len == 32 and model.pos.max_len == 32
    assert isinstance(model.tok_embed, TokenEmbedding) and model.tok_embed.scale == 1.0
    assert model.tok_embed.embedding.padding_idx == 0
    assert model.segment_embed is None  # type_vocab_size=0 by default
    assert isinstance(model.embed_norm, nn.LayerNorm) and model.embed_norm.eps == 1e-12
    assert len(model.layers) == 3
    for layer in model.layers:
        assert isinstance(layer, TransformerBlock)
        assert layer.cross_attn is None and not layer.norm_first  # post-LN, as in BERT
        assert layer.ffn.linear1.out_features == 4 * 16  # d_ff defaults to 4 d_model
        assert isinstance(layer.ffn.activation, nn.GELU)
        assert layer.norm1.eps == 1e-12
    assert isinstance(model.norm, nn.Identity)  # post-LN blocks already end in a norm
    assert isinstance(model.mlm_head.activation, nn.GELU)
    assert model.pooler is None and model.classifier is None  # a masked LM: no sequence head
    classifier = EncoderOnly(V, 16, 4, 1, num_classes=2)
    assert classifier.pooler.kind == "cls" and classifier.mlm_head is None
    assert model.classifier_dropout.p == 0.1  # follows dropout when not given
    assert EncoderOnly(V, 16, 4, 1, classifier_dropout=0.3).classifier_dropout.p == 0.3


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
def test_padding_is_ignored(norm_first: bool) -> None:
    model = small_model(norm_first=norm_first, pooling="mean", num_classes=2)
    lengths, T = [10, 6, 3], 10
    ids = torch.randint(1, V, (3, T))
    pad = right_padding(lengths, T)
    hidden = model.encode(ids, pad)  # (B, T, D)

    # Each row equals the same tokens encoded alone, without any padding appended.
    for b, n in enumerate(lengths):
        alone = model.encode(ids[b : b + 1, :n])  # (1, n, D)
        torch.testing.assert_close(hidden[b, :n], alone[0])
        torch.testing.assert_close(model.pool(hidden, pad)[b], model.pool(alone)[0])

    # Other tokens in the padding change nothing at real positions...
    scrambled = ids.clone()
    scrambled[pad] = (ids[pad] + torch.randint(1, V, ids[pad].shape)) % V
    torch.testing.assert_close(model.encode(scrambled, pad)[~pad], hidden[~pad])
    # ...but they would without the mask.
    assert not torch.allclose(model.encode(scrambled)[~pad], model.encode(ids)[~pad])


def test_mean_pooling_ignores_pads() -> None:
    pooler_model = small_model(pooling="mean", num_classes=2)
    hidden = torch.randn(3, 7, 16)
    pad = right_padding([7, 4, 0], 7)  # the last row is all padding
    pooled = pooler_model.pool(hidden, pad)
    torch.testing.assert_close(pooled[0], hidden[0].mean(dim=0))
    torch.testing.assert_close(pooled[1], hidden[1, :4].mean(dim=0))
    torch.testing.assert_close(pooled[2], torch.zeros(16))  # no 0 / 0
    changed = hidden.masked_fill(pad[..., None], 1e3)
    torch.testing.assert_close(pooler_model.pool(changed, pad), pooled)
    torch.testing.assert_close(pooler_model.pool(hidden), hidden.mean(dim=1))


def test_cls_pooling_reads_the_first_position() -> None:
    model = small_model(pooling="cls", num_classes=2)
    hidden = torch.randn(2, 6, 16)
    pooled = model.pool(hidden)
    dense = model.pooler.dense
    torch.testing.assert_close(pooled, torch.tanh(dense(hidden[:, 0])))
    later_changed = hidden.clone()
    later_changed[:, 1:] = torch.randn(2, 5, 16)
    torch.testing.assert_close(model.pool(later_changed), pooled)
    first_changed = hidden.clone()
    first_changed[:, 0] = torch.randn(2, 16)
    assert not torch.allclose(model.pool(first_changed), pooled)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
def test_every_position_sees_every_token(norm_first: bool) -> None:
    model = small_model(norm_first=norm_first)
    ids = torch.randint(V, (2, 9))
    hidden = model.encode(ids)
    for t in (0, 4, 8):
        changed = ids.clone()
        changed[:, t] = (ids[:, t] + 1) % V
        hidden_changed = model.encode(changed)
        for s in range(9):  # earlier positions too: there is no causal mask
            assert not torch.allclose(hidden_changed[:, s], hidden[:, s])


def test_segments() -> None:
    model = small_model(type_vocab_size=2)
    ids = torch.randint(V, (2, 8))
    segments = (torch.arange(8) >= 5).long().expand(2, 8)
    # No token_type_ids means segment 0 everywhere, as in BERT.
    torch.testing.assert_close(model.encode(ids), model.encode(ids, token_type_ids=0 * segments))
    changed = model.encode(ids, token_type_ids=segments)
    assert not torch.allclose(changed, model.encode(ids))


def test_mlm_decoder_is_tied_to_the_token_embedding() -> None:
    model = small_model()
    assert model.mlm_head.decoder.weight is model.tok_embed.weight
    assert model.mlm_head.decoder.bias.shape == (V,)  # its own output bias
    names = {name for name, _ in model.named_parameters()}
    assert "mlm_head.decoder.weight" not in names  # named_parameters yields a shared tensor once
    ids = torch.randint(V, (2, 5))
    hidden = model.encode(ids)
    head = model.mlm_head
    expected = head.norm(F.gelu(head.dense(hidden))) @ model.tok_embed.weight.T + head.decoder.bias
    torch.testing.assert_close(model(ids), expected)


def test_count_parameters_by_hand() -> None:
    V_, D, F_, L, T, S, C = 11, 8, 12, 2, 16, 2, 3
    model = EncoderOnly(
        V_, D, n_heads=2, n_layers=L, d_ff=F_, max_len=T, type_vocab_size=S, num_classes=C
    )
    embedding = V_ * D + T * D + S * D  # token (tied to the MLM decoder), position, segment
    layer = 4 * (D * D + D) + (D * F_ + F_) + (F_ * D + D) + 2 * 2 * D  # attn, ffn, 2 norms
    heads = (D * D + D) + (D * C + C)  # a classifier's heads: pooler, classifier
    non_embedding = 2 * D + L * layer + heads  # the embedding norm too; post-LN: no final norm
    assert count_parameters(model) == {
        "total": embedding + non_embedding,
        "embedding": embedding,
        "non_embedding": non_embedding,
    }
    # Pre-LN adds a final norm; mean pooling has no parameters.
    pre_ln_mean = EncoderOnly(
        V_,
        D,
        2,
        L,
        F_,
        max_len=T,
        type_vocab_size=S,
        num_classes=C,
        norm_first=True,
        pooling="mean",
    )
    assert count_parameters(pre_ln_mean)["non_embedding"] == non_embedding + 2 * D - (D * D + D)


def test_init_like_bert() -> None:
    model = EncoderOnly(V, d_model=64, n_heads=4, n_layers=1, type_vocab_size=2, num_classes=2)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            assert module.bias is None or torch.all(module.bias == 0), name
        if isinstance(module, nn.LayerNorm):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0), name
    assert torch.all(model.tok_embed.weight[0] == 0)  # the pad row
    for weight in (model.layers[0].ffn.linear1.weight, model.pos.embedding.weight):
        assert abs(weight.std().item() - 0.02) < 0.001
        assert abs(weight.mean().item()) < 0.001


def test_pre_ln_runs_and_differs() -> None:
    post = EncoderOnly(V, 16, 4, 2, dropout=0.0).eval()
    pre = EncoderOnly(V, 16, 4, 2, dropout=0.0, norm_first=True).eval()
    assert isinstance(pre.norm, nn.LayerNorm) and all(layer.norm_first for layer in pre.layers)
    result = pre.load_state_dict(post.state_dict(), strict=False)  # same weights...
    assert result.missing_keys == ["norm.weight", "norm.bias"] and not result.unexpected_keys
    ids = torch.randint(V, (2, 7))
    out_pre, out_post = pre(ids), post(ids)
    assert out_pre.shape == out_post.shape == (2, 7, V)
    assert torch.isfinite(out_pre).all()
    assert not torch.allclose(out_pre, out_post)  # ...in another arrangement


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_classifier_shapes(pooling: str) -> None:
    model = small_model(num_classes=5, pooling=pooling, type_vocab_size=2)
    ids = torch.randint(V, (3, 9))
    pad = right_padding([9, 5, 2], 9)
    segments = torch.randint(2, (3, 9))
    assert model.classifier.out_features == 5
    assert model.classify(ids, pad, segments).shape == (3, 5)
    with pytest.raises(ValueError, match="no masked-LM head"):
        model(ids, pad, segments)
    # The logits are the classifier applied to the pooled hidden states (eval: no dropout).
    pooled = model.pool(model.encode(ids, pad, segments), pad)
    torch.testing.assert_close(model.classify(ids, pad, segments), model.classifier(pooled))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(pooling="max"), r"pooling='max'.*'cls', 'mean'"),
        (dict(pos="rotary"), r"'rotary'.*'sinusoidal', 'learned', 'rope', 'alibi', 'none'"),
        (dict(d_model=18), r"d_model \(18\).*n_heads \(4\)"),
        (dict(activation="swish"), r"'swish'.*'relu', 'gelu'"),
        (dict(pad_id=V), rf"pad_id={V}.*vocab_size={V}"),
        (dict(type_vocab_size=-1), r"type_vocab_size"),
        (dict(num_classes=0), r"num_classes"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EncoderOnly(**(dict(vocab_size=V, d_model=16, n_heads=4, n_layers=1) | kwargs))


def test_bad_calls_are_clear_errors() -> None:
    model = small_model()
    ids = torch.randint(V, (2, 5))
    with pytest.raises(ValueError, match="num_classes"):
        model.classify(ids)
    with pytest.raises(ValueError, match="type_vocab_size=0"):
        model.encode(ids, token_type_ids=torch.zeros_like(ids))
    with pytest.raises(ValueError, match="max_len=32"):
        model(torch.randint(V, (1, 33)))
    with pytest.raises(ValueError, match="n_layers=2"):
        model.freeze_layers(3)


def test_body_and_heads_split_every_weight() -> None:
    model = EncoderOnly(
        V, 16, 4, 2, type_vocab_size=2, norm_first=True, num_classes=3, pos="learned"
    )
    prefixes = {key.split(".", 1)[0] for key in model.state_dict()}
    assert prefixes <= set(EncoderOnly.BODY_MODULES) | set(EncoderOnly.HEAD_MODULES)
    assert not set(EncoderOnly.BODY_MODULES) & set(EncoderOnly.HEAD_MODULES)
    body = model.body_state_dict()
    assert "norm.weight" in body and "segment_embed.weight" in body
    assert not any(key.startswith(EncoderOnly.HEAD_MODULES) for key in body)


def test_load_body_from_a_masked_lm_model() -> None:
    mlm = small_model(type_vocab_size=2)
    clf = EncoderOnly(V, 16, 4, 2, max_len=32, type_vocab_size=2, num_classes=3).eval()
    fresh_heads = {k: v.clone() for k, v in clf.state_dict().items() if k.startswith("classifier")}

    clf.load_body_state_dict(mlm.state_dict())  # the whole checkpoint; heads are skipped
    ids = torch.randint(V, (2, 6))
    torch.testing.assert_close(clf.encode(ids), mlm.encode(ids))
    for key, value in fresh_heads.items():
        torch.testing.assert_close(clf.state_dict()[key], value)
    assert clf.mlm_head is None  # the MLM head is the one part of the checkpoint left out

    incomplete = {k: v for k, v in mlm.state_dict().items() if not k.startswith("layers.1.")}
    with pytest.raises(ValueError, match=r"missing \['layers\.1\."):
        clf.load_body_state_dict(incomplete)


def test_masked_lm_loading_a_masked_lm_takes_its_head_too() -> None:
    # Continued pretraining on new text: the model must predict exactly as the checkpoint did.
    source, target = small_model(), small_model()
    target.load_body_state_dict(source.state_dict())
    ids = torch.randint(V, (3, 7))
    torch.testing.assert_close(target(ids), source(ids))
    assert target.mlm_head.decoder.weight is target.tok_embed.weight  # still tied

    no_bias = {k: v for k, v in source.state_dict().items() if k != "mlm_head.dense.bias"}
    with pytest.raises(ValueError, match=r"(?s)masked-LM head.*dense\.bias"):
        small_model().load_body_state_dict(no_bias)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
def test_freeze_layers(norm_first: bool) -> None:
    model = small_model(type_vocab_size=2, num_classes=3, norm_first=norm_first).train()
    model.freeze_layers(1)
    ids = torch.randint(V, (2, 6))
    model.classify(ids).sum().backward()
    for name, p in model.named_parameters():
        top = name.split(".", 1)[0]
        frozen = top in {"tok_embed", "pos", "segment_embed", "embed_norm"} or name.startswith(
            "layers.0."
        )
        assert p.requires_grad == (not frozen), name
        assert (p.grad is None) == frozen, name

    model.freeze_layers(2)  # all layers: the whole body, the final norm too
    body = {name for name, _ in model.named_parameters() if model.is_body_parameter(name)}
    assert body and all(not p.requires_grad for n, p in model.named_parameters() if n in body)
    assert model.classifier.weight.requires_grad and model.pooler.dense.weight.requires_grad
    masked_lm = small_model(type_vocab_size=2, norm_first=norm_first)
    masked_lm.freeze_layers(1)
    assert masked_lm.mlm_head.dense.weight.requires_grad
    assert not masked_lm.mlm_head.decoder.weight.requires_grad  # tied to the frozen embedding


def test_overfits_a_masked_lm_batch() -> None:
    vocab, mask_id = 16, 15  # ids 1..14 are words, 0 is padding, 15 is [MASK]
    targets = torch.randint(1, mask_id, (8, 12))  # (B, T)
    masked = torch.rand(8, 12) < 0.25
    masked[:, 0] = True  # at least one prediction per row
    inputs = targets.masked_fill(masked, mask_id)
    model = EncoderOnly(vocab, d_model=32, n_heads=2, n_layers=2, d_ff=64, dropout=0.0, max_len=12)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    first_loss = None
    for _ in range(300):
        logits = model(inputs)  # (B, T, V)
        loss = F.cross_entropy(logits[masked], targets[masked])  # only masked positions count
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first_loss = first_loss if first_loss is not None else loss.item()
        if loss.item() < 0.01:
            break

    assert first_loss > 2.0  # it really started from chance (ln 16 = 2.8)
    assert loss.item() < 0.01, f"masked tokens not learned: loss {loss.item():.4f}"
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(inputs).argmax(-1)[masked], targets[masked])
