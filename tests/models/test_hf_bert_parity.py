"""EncoderOnly with BERT's settings reproduces Hugging Face's BertModel and its heads."""

from __future__ import annotations

import pytest
import torch

from attnlab.interop import bert
from attnlab.interop.mapping import to_theirs
from attnlab.models import EncoderOnly

transformers = pytest.importorskip("transformers")

V, D, H, L, T_MAX, C = 37, 32, 4, 2, 24, 3


def bert_body_state_dict(model: EncoderOnly, prefix: str) -> dict[str, torch.Tensor]:
    """Our embeddings and blocks under BertModel's names (attnlab.interop.bert's map)."""
    maps = bert.body_maps(len(model.layers), model.d_model, V, prefix)
    return to_theirs(maps, model.state_dict())


def bert_pooler_state_dict(model: EncoderOnly, prefix: str) -> dict[str, torch.Tensor]:
    return to_theirs(bert.pooler_maps(prefix), model.state_dict())


def bert_mlm_head_state_dict(model: EncoderOnly) -> dict[str, torch.Tensor]:
    """BertForMaskedLM's head; its decoder.bias and `bias` are one tied tensor."""
    head = to_theirs(bert.mlm_head_maps(V), model.state_dict())
    return head | {"cls.predictions.bias": head["cls.predictions.decoder.bias"]}


@pytest.fixture
def ours() -> EncoderOnly:
    model = EncoderOnly(
        V, D, H, L, max_len=T_MAX, type_vocab_size=2, dropout=0.0, num_classes=C
    ).eval()
    with torch.no_grad():  # move LayerNorms and biases off their 1/0 init so they matter
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture
def ours_mlm(ours: EncoderOnly) -> EncoderOnly:
    """The masked-LM model with the same body as `ours` (the classifier), its head perturbed."""
    model = EncoderOnly(V, D, H, L, max_len=T_MAX, type_vocab_size=2, dropout=0.0).eval()
    model.load_body_state_dict(ours.state_dict())
    with torch.no_grad():
        for p in model.mlm_head.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture
def config():
    return transformers.BertConfig(
        vocab_size=V,
        hidden_size=D,
        num_hidden_layers=L,
        num_attention_heads=H,
        intermediate_size=4 * D,
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=T_MAX,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
        pad_token_id=0,
        num_labels=C,
    )


def random_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids (B, T), padding_mask (bool, True at pads) and segment ids, for a padded batch."""
    ids = torch.randint(V, (3, T_MAX))
    lengths = torch.tensor([T_MAX, 15, 4])
    pad = torch.arange(T_MAX)[None, :] >= lengths[:, None]  # (B, T)
    segments = (torch.arange(T_MAX)[None, :] >= torch.tensor([10, 7, 2])[:, None]).long()
    return ids.masked_fill(pad, 0), pad, segments


@pytest.mark.parametrize("with_segments", [True, False], ids=["segments", "no_segments"])
def test_hidden_states_and_pooler_match_bert_model(ours, config, with_segments: bool) -> None:
    ref = transformers.BertModel(config).eval()
    ref.load_state_dict(  # strict: every BERT weight is set
        bert_body_state_dict(ours, "") | bert_pooler_state_dict(ours, "")
    )
    ids, pad, segments = random_batch()
    segments = segments if with_segments else None
    with torch.no_grad():
        hidden = ours.encode(ids, pad, segments)
        out = ref(ids, attention_mask=(~pad).long(), token_type_ids=segments)
        # Pad positions too: they are queries that attend to the real tokens only, as in BERT.
        torch.testing.assert_close(hidden, out.last_hidden_state, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ours.pool(hidden, pad), out.pooler_output, atol=1e-4, rtol=1e-4)


def test_mlm_logits_match_bert_for_masked_lm(ours_mlm, config) -> None:
    ref = transformers.BertForMaskedLM(config).eval()
    assert ref.cls.predictions.decoder.weight is ref.bert.embeddings.word_embeddings.weight
    weights = bert_body_state_dict(ours_mlm, "bert.") | bert_mlm_head_state_dict(ours_mlm)
    ref.load_state_dict(weights)
    ids, pad, segments = random_batch()
    with torch.no_grad():
        expected = ref(ids, attention_mask=(~pad).long(), token_type_ids=segments).logits
        got = ours_mlm(ids, pad, segments)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_classifier_matches_bert_for_sequence_classification(ours, config) -> None:
    ref = transformers.BertForSequenceClassification(config).eval()
    classifier = {
        "classifier.weight": ours.classifier.weight,
        "classifier.bias": ours.classifier.bias,
    }
    ref.load_state_dict(
        bert_body_state_dict(ours, "bert.") | bert_pooler_state_dict(ours, "bert.") | classifier
    )
    ids, pad, segments = random_batch()
    with torch.no_grad():
        expected = ref(ids, attention_mask=(~pad).long(), token_type_ids=segments).logits
        torch.testing.assert_close(
            ours.classify(ids, pad, segments), expected, atol=1e-4, rtol=1e-4
        )


@torch.no_grad()
def bert_nsp_head_state_dict(model: EncoderOnly) -> dict[str, torch.Tensor]:
    """BertForPreTraining's next-sentence head. Its label 0 means "B follows A", ours 1: the
    two rows swap."""
    return to_theirs(bert.nsp_head_maps(), model.state_dict())


def test_pretraining_heads_match_bert_for_pretraining(config) -> None:
    """Both heads of BERT's pretraining (masked LM and next-sentence prediction) in fp32."""
    ours = EncoderOnly(V, D, H, L, max_len=T_MAX, type_vocab_size=2, dropout=0.0, nsp=True).eval()
    with torch.no_grad():  # off the 1/0 init; the pooler and NSP head random too
        for p in ours.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ref = transformers.BertForPreTraining(config).eval()
    ref.load_state_dict(  # strict: every BERT weight is set
        bert_body_state_dict(ours, "bert.")
        | bert_pooler_state_dict(ours, "bert.")
        | bert_mlm_head_state_dict(ours)
        | bert_nsp_head_state_dict(ours)
    )
    ids, pad, segments = random_batch()
    with torch.no_grad():
        out = ref(ids, attention_mask=(~pad).long(), token_type_ids=segments)
        hidden = ours.encode(ids, pad, segments)
        torch.testing.assert_close(
            ours.mlm_logits(hidden), out.prediction_logits, atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            ours.nsp_logits(hidden, pad).flip(-1), out.seq_relationship_logits, atol=1e-5, rtol=0
        )
    assert set(ours.state_dict()) >= {"pooler.dense.weight", "nsp_head.weight", "nsp_head.bias"}
