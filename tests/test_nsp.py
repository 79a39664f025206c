"""BERT's next-sentence prediction: the head, the task's loss and metrics, training with
data.nsp=true, and the refusals."""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import attnlab
from attnlab.data.spec import DataSpec
from attnlab.models import EncoderOnly
from attnlab.protocols import NextSentencePredictor
from attnlab.run import ConfigError
from attnlab.run.train import train
from attnlab.tasks import MaskedLMTask
from tests.conftest import compose_config

V, D = 50, 16
TINY_NSP = [
    "data=toy_mlm",
    "data.nsp=true",
    "data.max_len=32",
    "data.toy_train_lines=400",
    "data.toy_eval_lines=40",
    "data.batch_size=8",
    "model=bert",
    "model.d_model=32",
    "model.n_heads=2",
    "model.n_layers=1",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.log_every_n_steps=1",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "print_config=false",
]


def spec(next_sentence: bool) -> DataSpec:
    return DataSpec("masked_lm", V, decode=str, max_len=12, pad_id=0, next_sentence=next_sentence)


def nsp_batch(B: int = 4, T: int = 12) -> dict[str, torch.Tensor]:
    labels = torch.full((B, T), -100)
    labels[:, 3] = torch.randint(5, V, (B,))
    return {
        "input_ids": torch.randint(5, V, (B, T)),
        "padding_mask": torch.arange(T)[None, :] >= torch.randint(6, T + 1, (B,))[:, None],
        "token_type_ids": (torch.arange(T)[None, :] >= 5).long().expand(B, T),
        "labels": labels,
        "next_sentence_label": torch.randint(0, 2, (B,)),
    }


def test_nsp_head_names_and_protocol() -> None:
    network = EncoderOnly(V, D, 2, 1, type_vocab_size=2, nsp=True)
    assert isinstance(network, NextSentencePredictor)
    names = set(network.state_dict())
    assert {"pooler.dense.weight", "pooler.dense.bias", "nsp_head.weight", "nsp_head.bias"} <= names
    assert not any(
        k.startswith(("pooler.", "nsp_head.")) for k in EncoderOnly(V, D, 2, 1).state_dict()
    )
    hidden = torch.randn(3, 7, D)
    logits = network.nsp_logits(hidden)
    assert logits.shape == (3, 2)
    expected = network.nsp_head(torch.tanh(network.pooler.dense(hidden[:, 0])))
    torch.testing.assert_close(logits, expected)
    with pytest.raises(ValueError, match="nsp"):
        EncoderOnly(V, D, 2, 1, nsp=True, num_classes=2)


def test_continued_pretraining_keeps_the_nsp_head_and_fine_tuning_starts_fresh() -> None:
    pretrained = EncoderOnly(V, D, 2, 1, type_vocab_size=2, nsp=True)
    continued = EncoderOnly(V, D, 2, 1, type_vocab_size=2, nsp=True)
    continued.load_body_state_dict(pretrained.state_dict())
    for name, value in pretrained.state_dict().items():
        torch.testing.assert_close(continued.state_dict()[name], value, rtol=0, atol=0)
    classifier = EncoderOnly(V, D, 2, 1, type_vocab_size=2, num_classes=3)
    fresh = classifier.pooler.dense.weight.clone()
    classifier.load_body_state_dict(pretrained.state_dict())
    assert torch.equal(classifier.pooler.dense.weight, fresh)  # heads start fresh, as before


def test_task_adds_nsp_loss_and_logs_its_accuracy() -> None:
    torch.manual_seed(0)
    network = EncoderOnly(V, D, 2, 1, type_vocab_size=2, dropout=0.0, nsp=True)
    task = MaskedLMTask(spec(True))
    batch = nsp_batch()
    loss = task.step(network, batch, "val")
    hidden = network.encode(batch["input_ids"], batch["padding_mask"], batch["token_type_ids"])
    mlm = F.cross_entropy(network.mlm_logits(hidden).flatten(0, 1), batch["labels"].flatten())
    nsp_logits = network.nsp_logits(hidden, batch["padding_mask"])
    nsp = F.cross_entropy(nsp_logits, batch["next_sentence_label"])
    torch.testing.assert_close(loss, mlm + nsp)
    metrics = task.metrics("val").compute()
    right = (nsp_logits.argmax(-1) == batch["next_sentence_label"]).float().mean()
    torch.testing.assert_close(metrics["val/nsp_acc"], right)
    torch.testing.assert_close(metrics["val/nsp_loss"], nsp)
    assert {"train/nsp_acc", "train/nsp_loss"} <= set(task.metrics("train").keys())
    # Without pairs the task scores the masked LM alone, as before.
    plain = MaskedLMTask(spec(False))
    assert list(plain.metrics("val").keys()) == ["val/acc", "val/ppl"]
    del batch["next_sentence_label"]
    torch.testing.assert_close(plain.step(network, batch, "val"), mlm)


def test_nsp_pretraining_trains_and_logs_nsp_metrics(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    result = train(compose_config(tmp_path, TINY_NSP))
    metrics = result["metrics"]
    for name in ("train/nsp_acc", "train/nsp_loss", "val/nsp_acc", "val/nsp_loss", "test/nsp_acc"):
        assert math.isfinite(metrics[name]), name
    assert 0.0 <= metrics["val/nsp_acc"] <= 1.0
    # A fresh checkpoint loads without unpickling code (weights_only=True), whole and equal
    # to a full load; the network rebuilt from it (attnlab.load) computes what it computed.
    path = result["best_checkpoint"]
    plain, full = torch.load(path, weights_only=True), torch.load(path, weights_only=False)
    assert "network.nsp_head.weight" in plain["state_dict"] and plain.keys() == full.keys()
    assert plain["hyper_parameters"] == full["hyper_parameters"]
    assert plain["tokenizer"] == full["tokenizer"]
    network = attnlab.load(path).network
    reference = copy.deepcopy(network)
    reference.load_state_dict({k[8:]: v for k, v in full["state_dict"].items()})
    ids = torch.randint(5, network.tok_embed.weight.size(0), (2, 9))
    torch.testing.assert_close(network(ids), reference(ids), rtol=0, atol=0)
    hidden = network.encode(ids)
    torch.testing.assert_close(network.nsp_logits(hidden), reference.nsp_logits(hidden))

    # A run on pairs from before the NSP head still loads, without one (and says so).
    heads = ("network.nsp_head.", "network.pooler.")
    weights = {k: v for k, v in full["state_dict"].items() if not k.startswith(heads)}
    old = {**full, "state_dict": weights}
    old = {k: v for k, v in old.items() if k != "attnlab_checksum"}
    torch.save(old, tmp_path / "before_nsp.ckpt")
    with caplog.at_level(logging.WARNING, logger="attnlab.run.trained"):
        before = attnlab.load(tmp_path / "before_nsp.ckpt").network
    assert before.nsp_head is None and "no next-sentence head" in caplog.text
    torch.testing.assert_close(before(ids), reference(ids), rtol=0, atol=0)


class PlainEncoder(EncoderOnly):
    """An encoder that does masked LM only: no next-sentence head."""

    nsp_logits = None  # type: ignore[assignment]


def test_data_nsp_with_a_model_without_the_head_is_refused_in_one_line(tmp_path: Path) -> None:
    from attnlab.run.validation import check_compatibility

    cfg = compose_config(tmp_path, TINY_NSP)
    check_compatibility(cfg)  # EncoderOnly has the head
    cfg.model._target_ = f"{__name__}.PlainEncoder"
    with pytest.raises(ConfigError, match=r"^data\.nsp=true needs a model with a next-sent") as e:
        check_compatibility(cfg)  # before any data is built
    assert "\n" not in str(e.value) and "PlainEncoder" in str(e.value)
    with pytest.raises(TypeError, match=r"data\.nsp=true needs a NextSentencePredictor"):
        MaskedLMTask(spec(True)).check_network(PlainEncoder(V, D, 2, 1))
