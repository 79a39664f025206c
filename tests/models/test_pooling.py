"""Sequence classification with every architecture: pooling, padding invariance, heads."""

from __future__ import annotations

import pytest
import torch

from attnlab.models import DecoderOnly, EncoderDecoder, EncoderOnly
from attnlab.models.heads import Pooler, last_token_index


def padded(batch: int, width: int, vocab: int = 30, left: bool = False):
    lengths = torch.randint(1, width + 1, (batch,))
    lengths[0] = width
    columns = torch.arange(width)[None, :]
    mask = columns < (width - lengths[:, None]) if left else columns >= lengths[:, None]
    return torch.randint(3, vocab, (batch, width)).masked_fill(mask, 0), mask


@pytest.mark.parametrize("left", [False, True])
def test_last_token_index_matches_a_loop(left: bool) -> None:
    _, mask = padded(6, 9, left=left)
    expected = [max(i for i in range(9) if not mask[row, i]) for row in range(6)]
    assert last_token_index(mask).tolist() == expected


def test_last_pooling_reads_the_last_real_token() -> None:
    hidden = torch.randn(4, 7, 8)
    _, mask = padded(4, 7)
    pooled = Pooler(8, "last")(hidden, mask)
    for row in range(4):
        assert torch.equal(pooled[row], hidden[row, int((~mask[row]).sum()) - 1])


def classifiers() -> dict[str, torch.nn.Module]:
    small = dict(d_model=32, n_heads=4, num_classes=3, dropout=0.0)
    return {
        "gpt-last": DecoderOnly(30, n_layers=2, pooling="last", max_len=32, **small),
        "gpt-mean": DecoderOnly(30, n_layers=2, pooling="mean", max_len=32, **small),
        "bert-cls": EncoderOnly(30, n_layers=2, pooling="cls", max_len=32, **small),
        "encdec-mean": EncoderDecoder(30, pooling="mean", **small),
        "encdec-cls": EncoderDecoder(30, pooling="cls", **small),
        "encdec-decoder": EncoderDecoder(30, pooling="decoder", **small),
    }


@pytest.mark.parametrize("name", list(classifiers()))
def test_classification_is_padding_invariant(name: str) -> None:
    """A row's logits are the same alone (unpadded) as in a right-padded batch."""
    model = classifiers()[name].eval()
    ids, mask = padded(4, 10)
    batched = model.classify(ids, mask)  # (B, C)
    assert batched.shape == (4, 3)
    for row in range(4):
        alone = model.classify(ids[row : row + 1, ~mask[row]])
        torch.testing.assert_close(batched[row : row + 1], alone, atol=1e-5, rtol=1e-4)


def test_decoder_only_last_token_pooling_sees_every_token() -> None:
    """Under causal attention only the last token has seen the whole sentence: changing the
    first token changes the logits."""
    model = classifiers()["gpt-last"].eval()
    ids = torch.randint(3, 30, (1, 8))
    changed = ids.clone()
    changed[0, 0] = (ids[0, 0] - 3 + 1) % 27 + 3
    assert (model.classify(ids) - model.classify(changed)).abs().max() > 1e-6


def test_encoder_decoder_classifier_builds_only_what_it_uses() -> None:
    models = classifiers()
    for name in ("encdec-mean", "encdec-cls"):
        assert models[name].decoder is None and models[name].lm_head is None
    one_step = models["encdec-decoder"]
    assert one_step.decoder is not None and one_step.lm_head is None
    # Every parameter gets a gradient (none unused: DDP needs no find_unused_parameters).
    for name, model in models.items():
        if not name.startswith("encdec"):
            continue
        ids, mask = padded(3, 6)
        model.classify(ids, mask).sum().backward()
        unused = [n for n, p in model.named_parameters() if p.grad is None]
        assert unused == [], (name, unused)


def test_encoder_decoder_seq2seq_unchanged_without_num_classes() -> None:
    model = EncoderDecoder(30, d_model=32, n_heads=4)
    assert model.classifier is None and model.lm_head is not None
    with pytest.raises(ValueError, match="num_classes"):
        model.classify(torch.randint(3, 30, (2, 5)))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: DecoderOnly(30, d_model=32, n_heads=4, pooling="cls"), r"\['last', 'mean'\]"),
        (
            lambda: DecoderOnly(30, d_model=32, n_heads=4, prefix_attention="bidirectional"),
            r"\['causal', 'full'\]",
        ),
        (
            lambda: EncoderDecoder(30, d_model=32, n_heads=4, pooling="last"),
            r"\['mean', 'cls', 'decoder'\]",
        ),
        (lambda: EncoderOnly(30, d_model=32, n_heads=4, pooling="last"), r"\['cls', 'mean'\]"),
    ],
)
def test_bad_pooling_names_the_choices(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()
