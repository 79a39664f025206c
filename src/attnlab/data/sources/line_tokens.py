"""Causal-LM token streams from any text source: characters, words or byte-level BPE.

`tokenizer="char"`: one id per distinct character of the whole text (all splits), lines joined
by newlines. `"word"` and `"bpe"` (trained on the training lines, `bpe_vocab_size` tokens): each
line's tokens followed by `<eos>`, as the WikiText-2 streams. Tokenizers and streams are cached
under `cache_dir`, keyed by the text (`source.key`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import tokenizers
from tokenizers import Tokenizer

from attnlab.data.loading.token_cache import TokenCache
from attnlab.data.sources.base import SPLITS, TextSource, TokenizedCorpus
from attnlab.data.tokenizers.char import CharVocab
from attnlab.data.tokenizers.line import LineTokenizer, train_bpe, train_word_level

TOKENIZERS = ("char", "word", "bpe")


class LineTokens:
    """The lines of `text` as token streams (a `sources.base.TokenStreams`)."""

    def __init__(
        self,
        text: TextSource,
        cache_dir: str | Path | None = None,
        tokenizer: str = "bpe",
        bpe_vocab_size: int = 8192,
    ) -> None:
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"data tokenizer={tokenizer!r}: choose one of {list(TOKENIZERS)}")
        self.text = text
        self.cache = TokenCache(cache_dir)
        self.tokenizer = tokenizer
        self.bpe_vocab_size = bpe_vocab_size

    def _stream(
        self, split: str, fingerprint: str, build: Callable[[], np.ndarray], vocab_size: int
    ) -> np.ndarray:
        key = {"text": self.text.key, "split": split, "tokenizer": fingerprint}
        name = f"{self.text.name}/{self.tokenizer}/{split}"
        return self.cache.tokens(name, key, build, vocab_size)

    def load(self) -> TokenizedCorpus:
        return self._chars() if self.tokenizer == "char" else self._line_tokens()

    def _chars(self) -> TokenizedCorpus:
        texts = {split: "\n".join(self.text.lines(split)) + "\n" for split in SPLITS}
        vocab = CharVocab.from_text("".join(texts.values()))
        splits = {
            split: self._stream(
                split, vocab.fingerprint, partial(vocab.encode_array, text), vocab.vocab_size
            )
            for split, text in texts.items()
        }
        return TokenizedCorpus(splits, vocab.vocab_size, vocab.encode, vocab.decode)

    def _train(self) -> Tokenizer:
        lines = self.text.lines("train")
        if self.tokenizer == "word":
            return train_word_level(lines)
        return train_bpe(lines, self.bpe_vocab_size)

    def _line_tokens(self) -> TokenizedCorpus:
        key: dict[str, object] = {"text": self.text.key, "tokenizer": self.tokenizer}
        if self.tokenizer == "bpe":
            # BPE merges may differ between tokenizers releases: retrain after an upgrade.
            key |= {"vocab_size": self.bpe_vocab_size, "tokenizers": tokenizers.__version__}
        name = f"{self.text.name}/{self.tokenizer}"
        tokenizer = LineTokenizer(self.cache.tokenizer(name, key, self._train))
        splits = {
            split: self._stream(
                split,
                tokenizer.fingerprint,
                lambda split=split: tokenizer.encode_lines(self.text.lines(split)),
                tokenizer.vocab_size,
            )
            for split in SPLITS
        }
        return TokenizedCorpus(
            splits, tokenizer.vocab_size, tokenizer.encode, tokenizer.decode, tokenizer.eos_id
        )
