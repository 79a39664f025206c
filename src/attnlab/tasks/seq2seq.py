"""Sequence-to-sequence: teacher-forced cross-entropy, greedy decoding, exact match and BLEU.

BLEU is torchmetrics' BLEUScore on the decoded text split at spaces (toy symbols), or sacreBLEU
(13a tokenisation, cased) where the data decodes to detokenised text, as translation results are
reported.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.text import BLEUScore, SacreBLEUScore

from attnlab.data.spec import DataSpec
from attnlab.protocols import Seq2SeqNetwork
from attnlab.tasks.base import Task
from attnlab.tasks.decoding import beam_search, greedy_decode, strip_special
from attnlab.tasks.metrics import TokenAccuracy


class ExactMatch(MeanMetric):
    """Share of sequences decoded exactly right."""

    def update(self, predictions: list[list[int]], references: list[list[int]]) -> None:  # type: ignore[override]
        hits = [float(p == r) for p, r in zip(predictions, references, strict=True)]
        super().update(torch.tensor(hits))


BLEU_KINDS = ("auto", "bleu", "sacrebleu")


class Seq2SeqTask(Task):
    """Batches hold `src` (B, S) and `tgt` (B, T) = BOS y EOS, both right-padded.

    The network is a Seq2SeqNetwork (attnlab/protocols.py): an EncoderDecoder, or a
    DecoderOnly reading the source as a prefix. Training uses teacher forcing: the
    decoder reads tgt[:, :-1] and predicts tgt[:, 1:].
    Validation and test also decode (greedy, or beam search with `beam_size` > 1;
    `val_beam_size` sets validation's apart, e.g. greedy to keep epochs quick) and score
    whole sequences (exact match, BLEU). Decoding stops at EOS or at source length +
    `max_len_offset` tokens.

    `bleu="auto"` is sacreBLEU when `spec.detokenized`, else BLEUScore. With `keep_hypotheses`
    set (the `Hypotheses` callback sets it), each eval stage's decoded texts are kept in
    `hypotheses[stage]` as (example index, text) pairs; the callback empties them.
    """

    name = "seq2seq"
    metric_names = {
        "train": ("acc",),
        "val": ("acc", "exact_match", "bleu"),
        "test": ("acc", "exact_match", "bleu"),
    }
    network_protocol = Seq2SeqNetwork

    def __init__(
        self,
        spec: DataSpec,
        label_smoothing: float = 0.1,
        decode_on_eval: bool = True,
        max_len_offset: int = 10,
        beam_size: int = 1,
        length_penalty: float = 1.0,
        bleu: str = "auto",
        val_beam_size: int | None = None,
    ) -> None:
        if bleu not in BLEU_KINDS:
            raise ValueError(f"task.bleu={bleu!r}: choose one of {list(BLEU_KINDS)}")
        self.bleu = ("sacrebleu" if spec.detokenized else "bleu") if bleu == "auto" else bleu
        super().__init__(spec)  # builds the metrics, so after self.bleu
        for key, size in (("beam_size", beam_size), ("val_beam_size", val_beam_size)):
            if size is not None and size < 1:
                raise ValueError(f"task.{key}={size} must be at least 1 (1: greedy)")
        self.label_smoothing = label_smoothing
        self.decode_on_eval = decode_on_eval
        self.max_len_offset = max_len_offset
        self.beam_size = beam_size
        self.val_beam_size = val_beam_size
        self.length_penalty = length_penalty
        self.keep_hypotheses = False
        self.hypotheses: dict[str, list[tuple[int, str]]] = {"val": [], "test": []}

    def make_metrics(self, stage: str) -> MetricCollection:
        # Token accuracy over the target side, padding left out; no host read per update.
        metrics: dict[str, nn.Module] = {"acc": TokenAccuracy(ignore_index=self.spec.pad_id)}
        if stage != "train":
            metrics["exact_match"] = ExactMatch()
            # sacreBLEU tokenises the detokenised text itself (13a), the standard for reporting.
            bleu = SacreBLEUScore(tokenize="13a") if self.bleu == "sacrebleu" else BLEUScore()
            metrics["bleu"] = bleu
        return MetricCollection(metrics, prefix=f"{stage}/", compute_groups=False)

    def step(
        self, network: Seq2SeqNetwork, batch: dict[str, torch.Tensor], stage: str
    ) -> torch.Tensor:
        src, tgt = batch["src"], batch["tgt"]
        pad = self.spec.pad_id
        tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]  # (B, T-1) each
        src_padding_mask, tgt_padding_mask = src == pad, tgt_in == pad
        memory = network.encode(src, src_padding_mask)
        logits = network.decode(tgt_in, memory, src_padding_mask, tgt_padding_mask)  # (B, T-1, V)
        loss = F.cross_entropy(
            logits.flatten(0, 1),
            tgt_out.flatten(),
            ignore_index=pad,
            label_smoothing=self.label_smoothing,
        )
        metrics = self.metrics(stage)
        metrics["acc"].update(logits.argmax(-1).flatten(), tgt_out.flatten())
        if stage != "train" and self.decode_on_eval:
            self._score_decoding(network, src, src_padding_mask, tgt, metrics, stage, batch)
        return loss

    def _score_decoding(
        self,
        network: Seq2SeqNetwork,
        src: torch.Tensor,
        src_padding_mask: torch.Tensor,
        tgt: torch.Tensor,
        metrics: MetricCollection,
        stage: str,
        batch: dict[str, torch.Tensor],
    ) -> None:
        spec = self.spec
        beam_size = self.val_beam_size if stage == "val" else None
        decoded = self.decode(network, src, src_padding_mask, beam_size=beam_size)
        special = (spec.bos_id, spec.eos_id, spec.pad_id)
        predictions = [strip_special(row, *special) for row in decoded.tolist()]
        references = [strip_special(row, *special) for row in tgt.tolist()]
        metrics["exact_match"].update(predictions, references)
        hypotheses = [spec.decode(p) for p in predictions]
        metrics["bleu"].update(hypotheses, [[spec.decode(r)] for r in references])
        if self.keep_hypotheses:
            # Batches may come in any order (length-sorted, say): keep where each belongs.
            index = batch["index"].tolist() if "index" in batch else [None] * len(hypotheses)
            self.hypotheses[stage].extend(zip(index, hypotheses, strict=True))

    def decode(
        self,
        network: Seq2SeqNetwork,
        src: torch.Tensor,
        src_padding_mask: torch.Tensor,
        max_len: int | None = None,
        beam_size: int | None = None,
    ) -> torch.Tensor:
        """(B, <= max_len) token ids: greedy, or beam search (`beam_size`, else the task's).

        max_len defaults to source length + max_len_offset, within what the network can hold.
        """
        if max_len is None:
            src_len = src.size(1)
            max_len = min(src_len + self.max_len_offset, network.max_target_len(src_len))
        special = (self.spec.bos_id, self.spec.eos_id, self.spec.pad_id)
        beam_size = beam_size or self.beam_size
        if beam_size == 1:
            return greedy_decode(network, src, src_padding_mask, *special, max_len)
        return beam_search(
            network, src, src_padding_mask, *special, max_len, beam_size, self.length_penalty
        )

    def flops_per_token(self, network: Seq2SeqNetwork, seq_len: int) -> int | None:
        """Per token of source and target, each seq_len long. A prefix LM reads the pair as
        one sequence, so its tokens attend over 2 * seq_len keys."""
        return super().flops_per_token(network, 2 * seq_len if network.prefix_lm else seq_len)

    def count_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | int:
        pad = self.spec.pad_id
        return (batch["src"] != pad).sum() + (batch["tgt"] != pad).sum()
