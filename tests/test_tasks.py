"""Masked-LM and classification tasks: losses against direct computations, metric values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab.data.spec import DataSpec
from attnlab.models import DecoderOnly, EncoderDecoder
from attnlab.tasks import CausalLMTask, ClassificationTask, MaskedLMTask, Seq2SeqTask


class Fixed(nn.Module):
    """A stand-in network: `classify` returns given logits; `encode` + `mlm_logits` return the
    given per-position logits (the head applied to the positions the task selects)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def encode(self, *args: object) -> torch.Tensor:
        return self.logits

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden

    def classify(self, *args: object) -> torch.Tensor:
        return self.logits


def test_masked_lm_scores_only_selected_positions() -> None:
    vocab = 13
    task = MaskedLMTask(DataSpec(task="masked_lm", vocab_size=vocab, decode=str, max_len=9))
    logits = torch.randn(3, 9, vocab)
    labels = torch.full((3, 9), -100)
    selected = torch.rand(3, 9) < 0.3
    selected[0, 0] = True
    labels[selected] = torch.randint(0, vocab, (int(selected.sum()),))
    batch = {
        "input_ids": torch.zeros(3, 9, dtype=torch.long),
        "labels": labels,
        "padding_mask": torch.zeros(3, 9, dtype=torch.bool),
    }
    loss = task.step(Fixed(logits), batch, "val")
    expected = F.cross_entropy(logits[selected], labels[selected])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    metrics = task.metrics("val").compute()
    accuracy = (logits[selected].argmax(-1) == labels[selected]).float().mean()
    assert metrics["val/acc"].item() == pytest.approx(accuracy.item(), abs=1e-6)
    assert metrics["val/ppl"].item() == pytest.approx(expected.exp().item(), rel=1e-5)


def test_classification_loss_accuracy_and_macro_f1() -> None:
    spec = DataSpec(task="classification", vocab_size=5, decode=str, max_len=4, num_classes=2)
    task = ClassificationTask(spec)
    logits = torch.randn(64, 2)
    labels = torch.randint(0, 2, (64,))
    batch = {
        "input_ids": torch.zeros(64, 4, dtype=torch.long),
        "labels": labels,
        "padding_mask": torch.zeros(64, 4, dtype=torch.bool),
    }
    loss = task.step(Fixed(logits), batch, "test")
    assert loss.item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    predictions = logits.argmax(-1)
    f1s = []
    for c in (0, 1):
        tp = ((predictions == c) & (labels == c)).sum().item()
        fp = ((predictions == c) & (labels != c)).sum().item()
        fn = ((predictions != c) & (labels == c)).sum().item()
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    metrics = task.metrics("test").compute()
    assert metrics["test/acc"].item() == pytest.approx(
        (predictions == labels).float().mean().item()
    )
    assert metrics["test/f1"].item() == pytest.approx(sum(f1s) / 2, abs=1e-6)


def test_classification_needs_num_classes() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        ClassificationTask(DataSpec(task="classification", vocab_size=5, decode=str, max_len=4))


def test_tasks_ask_networks_through_their_protocols() -> None:
    """A task accepts any network with the methods of its protocol, and names what is missing."""
    spec = DataSpec(task="classification", vocab_size=11, decode=str, max_len=5, num_classes=3)
    classification = ClassificationTask(spec)
    classification.check_network(Fixed(torch.zeros(2, 3)))  # a stand-in is enough
    masked_lm = MaskedLMTask(DataSpec(task="masked_lm", vocab_size=11, decode=str, max_len=5))
    masked_lm.check_network(Fixed(torch.zeros(2, 5, 11)))
    with pytest.raises(TypeError, match=r"task 'classification' needs a Classifier network"):
        classification.check_network(nn.Linear(2, 2))


def test_seq2seq_flops_count_a_prefix_lm_over_source_and_target() -> None:
    spec = DataSpec(task="seq2seq", vocab_size=20, decode=str, max_len=8, pad_id=0)
    task = Seq2SeqTask(spec)
    gpt = DecoderOnly(20, d_model=16, n_heads=2, n_layers=1, max_len=16)
    encdec = EncoderDecoder(20, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1)
    assert task.flops_per_token(gpt, 8) == gpt.flops_per_token(16)  # attends over 2 * 8 keys
    assert task.flops_per_token(encdec, 8) == encdec.flops_per_token(8)


def test_declared_metric_names_are_what_each_task_logs() -> None:
    """optimized_metric is checked against `metric_names` before a run: they must agree."""
    spec = DataSpec(task="x", vocab_size=11, decode=str, max_len=5, num_classes=3, pad_id=0)
    for task_cls in (CausalLMTask, ClassificationTask, MaskedLMTask, Seq2SeqTask):
        task = task_cls(spec)
        for stage in ("train", "val", "test"):
            logged = sorted(task.metrics(stage).keys())
            declared = sorted(f"{stage}/{n}" for n in task_cls.metric_names.get(stage, ()))
            assert logged == declared, (task_cls.name, stage)
