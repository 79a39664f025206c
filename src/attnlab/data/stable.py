"""The stable DataModule names: configs and checkpoints name them (`_target_`) with these
keyword arguments, so they stay as they are. Each is a task DataModule handed its source: the
keyword arguments that are not the task module's go to the source (see the source's class for
them and their defaults). New configs may name the task modules and sources directly.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

from attnlab.data.modules.causal_lm import CausalLMDataModule
from attnlab.data.modules.classification import ClassificationDataModule
from attnlab.data.modules.seq2seq import Seq2SeqDataModule
from attnlab.data.sources.multi30k import Multi30k
from attnlab.data.sources.shakespeare import ShakespeareChars
from attnlab.data.sources.sst2 import SST2
from attnlab.data.sources.toy_markov import ToyMarkov
from attnlab.data.sources.toy_pairs import ToyPairs
from attnlab.data.sources.wikitext import WikiText2Tokens
from attnlab.data.tokenizers.translation import TranslationTokenizer


def source_and_rest(source_cls: type, *args: Any, **options: Any) -> tuple[Any, dict[str, Any]]:
    """(`source_cls` built from `args` and the `options` it takes, the other options)."""
    takes = inspect.signature(source_cls).parameters
    mine = {key: value for key, value in options.items() if key in takes}
    rest = {key: value for key, value in options.items() if key not in takes}
    return source_cls(*args, **mine), rest


class ShakespeareCharDataModule(CausalLMDataModule):
    """Tiny Shakespeare characters: `sources.shakespeare.ShakespeareChars` (url, sha256)."""

    source_class: ClassVar[type] = ShakespeareChars  # gets the other options

    def __init__(
        self,
        data_dir: str | Path,
        cache_dir: str | Path | None = None,
        batch_size: int = 12,
        train_samples_per_epoch: int | None = 100_000,
        **options: Any,
    ) -> None:
        source, windows = source_and_rest(self.source_class, data_dir, cache_dir, **options)
        super().__init__(
            batch_size=batch_size,
            train_samples_per_epoch=train_samples_per_epoch,
            **windows,
            source=source,
        )


class WikiText2DataModule(CausalLMDataModule):
    """WikiText-2 words or BPE: `sources.wikitext.WikiText2Tokens` (tokenizer, bpe_vocab_size,
    url_base)."""

    source_class: ClassVar[type] = WikiText2Tokens  # gets the other options

    def __init__(
        self,
        data_dir: str | Path,
        cache_dir: str | Path | None = None,
        train_samples_per_epoch: int | None = 100_000,
        **options: Any,
    ) -> None:
        source, windows = source_and_rest(self.source_class, data_dir, cache_dir, **options)
        super().__init__(train_samples_per_epoch=train_samples_per_epoch, **windows, source=source)


class ToyLMDataModule(CausalLMDataModule):
    """The toy Markov-chain language: `sources.toy_markov.ToyMarkov` (vocab_size, branching,
    num_train_tokens, num_val_tokens, num_test_tokens, seed)."""

    source_class: ClassVar[type] = ToyMarkov  # gets the other options

    source: ToyMarkov

    def __init__(
        self, block_size: int = 32, train_samples_per_epoch: int | None = 10_000, **options: Any
    ) -> None:
        source, windows = source_and_rest(self.source_class, **options)
        super().__init__(
            block_size, train_samples_per_epoch=train_samples_per_epoch, **windows, source=source
        )

    @property
    def optimal_loss(self) -> float:
        """Cross-entropy (nats per token) of the true next-token distribution on train."""
        return self.source.optimal_loss(self.corpus.splits["train"])


class SST2DataModule(ClassificationDataModule):
    """GLUE SST-2 sentiment: `sources.sst2.SST2` (val_size, split_seed, url_base)."""

    source_class: ClassVar[type] = SST2  # gets the other options

    def __init__(
        self, data_dir: str | Path, cache_dir: str | Path | None = None, **options: Any
    ) -> None:
        source, rest = source_and_rest(self.source_class, data_dir, **options)
        super().__init__(source, cache_dir, **rest)


class ToySeq2SeqDataModule(Seq2SeqDataModule):
    """Copy, reverse or sort random symbols: `sources.toy_pairs.ToyPairs` (transform,
    vocab_size, min_len, max_len, num_train, num_val, num_test, seed)."""

    source_class: ClassVar[type] = ToyPairs  # gets the other options

    def __init__(self, batch_size: int = 64, num_workers: int = 0, **options: Any) -> None:
        super().__init__(
            self.source_class(**options), batch_size=batch_size, num_workers=num_workers
        )
        self.max_len = self.source.max_len


class Multi30kDataModule(Seq2SeqDataModule):
    """Multi30k translation: `sources.multi30k.Multi30k` (source_lang, target_lang, vocab,
    bpe_vocab_size, tgt_bpe_vocab_size, max_len, max_lines, tokenizer_path, download,
    url_base), in batches of up to `max_tokens` padded tokens per side."""

    source_class: ClassVar[type] = Multi30k  # gets the other options

    source: Multi30k

    def __init__(
        self,
        data_dir: str | Path,
        cache_dir: str | Path | None = None,
        max_tokens: int = 4096,
        **options: Any,
    ) -> None:
        source, rest = source_and_rest(self.source_class, data_dir, cache_dir, **options)
        if max_tokens < source.max_len:
            raise ValueError(f"data.max_tokens={max_tokens} must hold one sequence of max_len")
        super().__init__(source, max_tokens=max_tokens, **rest)
        self.vocab, self.max_len, self.max_lines = source.vocab, source.max_len, source.max_lines

    @property
    def tokenizer(self) -> TranslationTokenizer:
        return self.source.tokenizer

    def lines(self, split: str, lang: str) -> list[str]:
        return self.source.lines(split, lang)
