"""What a DataModule tells the network and the task about its data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class DataSpec:
    """Vocabulary facts shared by data, network and task.

    `decode` turns token ids into text (for BLEU, samples and logs), dropping special ids;
    `encode` turns text into ids (prompts; for seq2seq, the source). Special ids are None where
    the data has none (character-level text, say).
    """

    task: str
    vocab_size: int
    decode: Callable[[Sequence[int]], str]
    max_len: int  # longest sequence the data produces (a window, or a pair with BOS/EOS)
    pad_id: int | None = None
    bos_id: int | None = None
    eos_id: int | None = None
    encode: Callable[[str], list[int]] | None = None
    num_classes: int | None = None  # classification data only
    # Seq2seq with separate vocabularies: the target's size (vocab_size is then the source's).
    tgt_vocab_size: int | None = None
    # `decode` gives text as people write it (cased, detokenised): BLEU can be sacreBLEU's.
    detokenized: bool = False
    # Causal LM on packed documents: batches carry `document_ids` (B, T), and attention should
    # stay inside each document (data.document_mask=true; data/modules/tokens.py).
    document_mask: bool = False
    # Masked LM on sentence pairs (data.nsp=true): batches carry next_sentence_label (B,), and
    # the network needs a next-sentence head (protocols.NextSentencePredictor).
    next_sentence: bool = False
