"""Masked language modelling: cross-entropy on the masked positions, accuracy and perplexity;
with sentence pairs (data.nsp=true) plus BERT's next-sentence prediction."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection

from attnlab.data.spec import DataSpec
from attnlab.protocols import MaskedLM, NextSentencePredictor
from attnlab.tasks.base import Task
from attnlab.tasks.metrics import MeanLoss, PerplexityFromLoss, TokenAccuracy

IGNORE_INDEX = -100  # labels of positions that were not selected for masking


class MaskedLMTask(Task):
    """Batches hold `input_ids` (B, T) already masked, `labels` (B, T) with the original ids at
    the selected positions and -100 elsewhere, and `padding_mask` (B, T), True at padding.
    The data does the (dynamic) masking, so the task only scores. The network provides
    `encode` and `mlm_logits` (see EncoderOnly).

    The vocabulary projection runs only where it is scored (~15% of positions; it dominates a
    small model's step): at `mlm_positions` (B, S), S slots per row holding the selected
    positions then unselected ones (label -100), a shape that does not depend on the values
    (data/loading/masking.py). A batch without them is scored at every position.

    Data of sentence pairs (`spec.next_sentence`, data.nsp=true) also holds
    `next_sentence_label` (B,), 1 where B follows A: the loss is then MLM + NSP cross-entropy,
    as BERT's, `nsp_acc` and `nsp_loss` are logged, and the network must also be a
    NextSentencePredictor.
    """

    name = "masked_lm"
    metric_names = {"train": ("acc",), "val": ("acc", "ppl"), "test": ("acc", "ppl")}
    network_protocol = MaskedLM

    def __init__(self, spec: DataSpec) -> None:
        super().__init__(spec)

    def check_network(self, network: nn.Module) -> None:
        super().check_network(network)
        if self.spec.next_sentence and not isinstance(network, NextSentencePredictor):
            raise TypeError(
                "data.nsp=true needs a NextSentencePredictor network (attnlab/protocols.py); "
                f"{type(network).__name__} is not one"
            )

    def make_metrics(self, stage: str) -> MetricCollection:
        metrics: dict[str, nn.Module] = {"acc": TokenAccuracy(ignore_index=IGNORE_INDEX)}
        if stage != "train":
            metrics["ppl"] = PerplexityFromLoss()
        if self.spec.next_sentence:
            metrics["nsp_acc"] = TokenAccuracy()
            metrics["nsp_loss"] = MeanLoss()
        return MetricCollection(metrics, prefix=f"{stage}/", compute_groups=False)

    def step(self, network: MaskedLM, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        hidden = network.encode(
            batch["input_ids"], batch["padding_mask"], batch.get("token_type_ids")
        )  # (B, T, D)
        nsp_labels = batch.get("next_sentence_label")  # (B,), with data.nsp=true
        nsp_logits = None
        if nsp_labels is not None:  # from every position's state, before the gather below
            nsp_logits = network.nsp_logits(hidden, batch["padding_mask"])  # (B, 2)
        labels = batch["labels"]  # (B, T)
        positions = batch.get("mlm_positions")  # (B, S)
        if positions is not None:
            hidden = hidden.gather(1, positions[..., None].expand(-1, -1, hidden.size(-1)))
            labels = labels.gather(1, positions)  # (B, S), -100 at unselected slots
        logits = network.mlm_logits(hidden)  # (B, S, V)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
        metrics = self.metrics(stage)
        metrics["acc"].update(logits.argmax(-1), labels)
        if stage != "train":
            metrics["ppl"].update(loss, (labels != IGNORE_INDEX).sum())
        if nsp_logits is not None:
            nsp_loss = F.cross_entropy(nsp_logits, nsp_labels)
            metrics["nsp_acc"].update(nsp_logits.argmax(-1), nsp_labels)
            metrics["nsp_loss"].update(nsp_loss, nsp_labels.size(0))
            loss = loss + nsp_loss  # BERT's pretraining loss: the sum of both
        return loss

    def count_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | int:
        return (~batch["padding_mask"]).sum()
