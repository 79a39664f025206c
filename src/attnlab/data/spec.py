"""What a DataModule tells the network and the task about its data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from attnlab.utils.errors import ConfigError


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


def start_ids(spec: DataSpec) -> list[int]:
    """Where the data's text starts: <eos> (every document follows one), else a newline
    (characters), else symbol 0 (toy data: a chain may start anywhere)."""
    if spec.eos_id is not None:
        return [spec.eos_id]
    try:
        ids = spec.encode("\n") if spec.encode is not None else []
    except (ValueError, KeyError):  # no newline in the vocabulary
        ids = []
    return ids or [0]


def prompt_ids(spec: DataSpec, prompt: str | None) -> list[int]:
    """`prompt`'s token ids; None or "" for the default prompt. A prompt the data's tokenizer
    cannot read, or one it reads as no tokens, is refused naming the key."""
    if not prompt:
        return start_ids(spec)
    if spec.encode is None:
        raise ConfigError(f"prompt={prompt!r}: the data has no tokenizer to read it")
    try:
        ids = spec.encode(prompt)
    except (ValueError, KeyError) as error:
        raise ConfigError(f"prompt={prompt!r} cannot be read: {error}") from None
    if not ids:
        raise ConfigError(
            f"prompt={prompt!r} holds no token of the data's vocabulary; leave prompt unset "
            "to start where the data's text starts"
        )
    return ids
