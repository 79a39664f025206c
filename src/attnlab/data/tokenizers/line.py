"""A Hugging Face tokenizer over lines of text with one `<eos>` after every line.

This is the convention of pytorch/examples' word_language_model (and of WikiText results):
each line of the file becomes its tokens followed by `<eos>`, and `<eos>` decodes back to a
newline. Two vocabularies are built here: whole words (split on whitespace; unknown words map to
`<unk>`) and byte-level BPE, which can encode any text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from attnlab.data.loading.packing import encode_stream
from attnlab.data.loading.token_cache import tokenizer_fingerprint

EOS = "<eos>"
UNK = "<unk>"


def train_word_level(lines: Sequence[str]) -> Tokenizer:
    """Every whitespace-separated word of `lines`, plus `<eos>` and `<unk>`, most frequent first.

    Frequency order (ties in order of first appearance) suits adaptive softmax. The vocabulary is
    built here rather than with WordLevelTrainer, which leaves a gap in the ids when `<unk>` is
    both a special token and a word of the text.
    """
    counts = Counter(chain.from_iterable(line.split() for line in lines))
    counts[EOS] += len(lines)
    counts.setdefault(UNK, 0)  # unknown words of other splits need it even if train has none
    vocab = {word: index for index, (word, _) in enumerate(counts.most_common())}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer  # with no decoder, decode joins tokens with spaces


def train_bpe(lines: Iterable[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE (GPT-2 style: lossless, no unknown tokens) with `<eos>` as id 0."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer)
    return tokenizer


class LineTokenizer:
    """Encode and decode text as lines, `<eos>` standing for each newline."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        eos_id = tokenizer.token_to_id(EOS)
        if eos_id is None:
            raise ValueError(f"the tokenizer has no {EOS} token")
        self.tokenizer = tokenizer
        self.eos_id: int = eos_id
        self.fingerprint = tokenizer_fingerprint(tokenizer)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode_lines(self, lines: Sequence[str]) -> np.ndarray:
        """One flat int64 array: the tokens of each line followed by `<eos>`."""
        return encode_stream(self.tokenizer, lines, self.eos_id)

    def encode(self, text: str) -> list[int]:
        """Ids of `text`; each newline becomes `<eos>` (a prompt without one gets none)."""
        *lines, last = text.split("\n")
        ids = self.encode_lines(lines).tolist() if lines else []
        if last:
            ids += self.tokenizer.encode(last, add_special_tokens=False).ids
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, `<eos>` as a newline."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        lines = np.split(ids, np.flatnonzero(ids == self.eos_id))
        # Every piece after the first starts with the <eos> that ended the line before it.
        pieces = [lines[0].tolist()] + [line[1:].tolist() for line in lines[1:]]
        return "\n".join(self.tokenizer.decode_batch(pieces, skip_special_tokens=False))
