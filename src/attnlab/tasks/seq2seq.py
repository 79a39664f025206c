"""Sequence-to-sequence: teacher-forced cross-entropy, greedy decoding, exact match and BLEU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.text import BLEUScore

from attnlab.data.spec import DataSpec
from attnlab.tasks.base import Task
from attnlab.tasks.decoding import beam_search, greedy_decode, strip_special


class ExactMatch(MeanMetric):
    """Share of sequences decoded exactly right."""

    def update(self, predictions: list[list[int]], references: list[list[int]]) -> None:  # type: ignore[override]
        hits = [float(p == r) for p, r in zip(predictions, references, strict=True)]
        super().update(torch.tensor(hits))


class Seq2SeqTask(Task):
    """Batches hold `src` (B, S) and `tgt` (B, T) = BOS y EOS, both right-padded.

    Training uses teacher forcing: the decoder reads tgt[:, :-1] and predicts tgt[:, 1:].
    Validation and test also decode (greedy, or beam search with `beam_size` > 1) and score
    whole sequences (exact match, BLEU). Decoding stops at EOS or at source length +
    `max_len_offset` tokens.
    """

    name = "seq2seq"

    def __init__(
        self,
        spec: DataSpec,
        label_smoothing: float = 0.1,
        decode_on_eval: bool = True,
        max_len_offset: int = 10,
        beam_size: int = 1,
        length_penalty: float = 1.0,
    ) -> None:
        super().__init__(spec)
        if beam_size < 1:
            raise ValueError(f"task.beam_size={beam_size} must be at least 1 (1: greedy)")
        self.label_smoothing = label_smoothing
        self.decode_on_eval = decode_on_eval
        self.max_len_offset = max_len_offset
        self.beam_size = beam_size
        self.length_penalty = length_penalty

    def make_metrics(self, stage: str) -> MetricCollection:
        metrics: dict[str, nn.Module] = {
            "acc": MulticlassAccuracy(
                self.spec.vocab_size, average="micro", ignore_index=self.spec.pad_id
            )
        }
        if stage != "train":
            metrics["exact_match"] = ExactMatch()
            metrics["bleu"] = BLEUScore(n_gram=4)
        return MetricCollection(metrics, prefix=f"{stage}/", compute_groups=False)

    def step(self, network: nn.Module, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        src, tgt = batch["src"], batch["tgt"]
        pad = self.spec.pad_id
        tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]  # (B, T-1) each
        src_padding_mask, tgt_padding_mask = src == pad, tgt_in == pad
        logits = network(src, tgt_in, src_padding_mask, tgt_padding_mask)  # (B, T-1, V)
        loss = F.cross_entropy(
            logits.flatten(0, 1),
            tgt_out.flatten(),
            ignore_index=pad,
            label_smoothing=self.label_smoothing,
        )
        metrics = self.metrics(stage)
        metrics["acc"].update(logits.argmax(-1).flatten(), tgt_out.flatten())
        if stage != "train" and self.decode_on_eval:
            self._score_decoding(network, src, src_padding_mask, tgt, metrics)
        return loss

    def _score_decoding(
        self,
        network: nn.Module,
        src: torch.Tensor,
        src_padding_mask: torch.Tensor,
        tgt: torch.Tensor,
        metrics: MetricCollection,
    ) -> None:
        spec = self.spec
        max_len = min(src.size(1) + self.max_len_offset, getattr(network, "max_len", 10**9))
        decoded = self.decode(network, src, src_padding_mask, max_len)
        special = (spec.bos_id, spec.eos_id, spec.pad_id)
        predictions = [strip_special(row, *special) for row in decoded.tolist()]
        references = [strip_special(row, *special) for row in tgt.tolist()]
        metrics["exact_match"].update(predictions, references)
        metrics["bleu"].update(
            [spec.decode(p) for p in predictions], [[spec.decode(r)] for r in references]
        )

    def decode(
        self,
        network: nn.Module,
        src: torch.Tensor,
        src_padding_mask: torch.Tensor,
        max_len: int,
    ) -> torch.Tensor:
        special = (self.spec.bos_id, self.spec.eos_id, self.spec.pad_id)
        if self.beam_size == 1:
            return greedy_decode(network, src, src_padding_mask, *special, max_len)
        return beam_search(
            network, src, src_padding_mask, *special, max_len, self.beam_size, self.length_penalty
        )

    def count_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        pad = self.spec.pad_id
        return int((batch["src"] != pad).sum() + (batch["tgt"] != pad).sum())
