"""The stable DataModule names: configs and checkpoints name them (`_target_`) with these
keyword arguments, so they stay as they are. Each is a task DataModule handed its source.
New configs may name the task DataModules and sources directly (`modules`, `sources`).
"""

from __future__ import annotations

from pathlib import Path

from attnlab.data.modules.causal_lm import CausalLMDataModule
from attnlab.data.modules.classification import ClassificationDataModule
from attnlab.data.modules.seq2seq import Seq2SeqDataModule
from attnlab.data.sources.multi30k import URL_BASE as MULTI30K_URL_BASE
from attnlab.data.sources.multi30k import Multi30k
from attnlab.data.sources.shakespeare import SHA256 as SHAKESPEARE_SHA256
from attnlab.data.sources.shakespeare import URL as SHAKESPEARE_URL
from attnlab.data.sources.shakespeare import ShakespeareChars
from attnlab.data.sources.sst2 import SST2
from attnlab.data.sources.toy_markov import ToyMarkov
from attnlab.data.sources.toy_pairs import ToyPairs
from attnlab.data.sources.wikitext import URL_BASE as WIKITEXT_URL_BASE
from attnlab.data.sources.wikitext import WikiText2Tokens
from attnlab.data.tokenizers.translation import TranslationTokenizer


class ShakespeareCharDataModule(CausalLMDataModule):
    """Tiny Shakespeare characters (`sources.shakespeare.ShakespeareChars`)."""

    def __init__(
        self,
        data_dir: str | Path,
        cache_dir: str | Path | None = None,
        block_size: int = 64,
        batch_size: int = 12,
        num_workers: int = 0,
        train_samples_per_epoch: int | None = 100_000,
        shuffle_seed: int | None = None,
        pin_memory: bool = False,
        url: str | None = SHAKESPEARE_URL,
        sha256: str | None = SHAKESPEARE_SHA256,
    ) -> None:
        windows = (block_size, batch_size, num_workers, train_samples_per_epoch, shuffle_seed)
        source = ShakespeareChars(data_dir, cache_dir, url, sha256)
        super().__init__(*windows, pin_memory, source=source)


class WikiText2DataModule(CausalLMDataModule):
    """WikiText-2, word level or BPE (`sources.wikitext.WikiText2Tokens`)."""

    def __init__(
        self,
        data_dir: str | Path,
        cache_dir: str | Path | None = None,
        tokenizer: str = "word",
        bpe_vocab_size: int = 8192,
        block_size: int = 64,
        batch_size: int = 32,
        num_workers: int = 0,
        train_samples_per_epoch: int | None = 100_000,
        shuffle_seed: int | None = None,
        pin_memory: bool = False,
        url_base: str | None = WIKITEXT_URL_BASE,
    ) -> None:
        windows = (block_size, batch_size, num_workers, train_samples_per_epoch, shuffle_seed)
        source = WikiText2Tokens(data_dir, cache_dir, tokenizer, bpe_vocab_size, url_base)
        super().__init__(*windows, pin_memory, source=source)


class ToyLMDataModule(CausalLMDataModule):
    """The toy Markov-chain language (`sources.toy_markov.ToyMarkov`)."""

    source: ToyMarkov

    def __init__(
        self,
        vocab_size: int = 64,
        branching: int = 4,
        num_train_tokens: int = 200_000,
        num_val_tokens: int = 20_000,
        num_test_tokens: int = 20_000,
        seed: int = 1234,
        block_size: int = 32,
        batch_size: int = 32,
        num_workers: int = 0,
        train_samples_per_epoch: int | None = 10_000,
        shuffle_seed: int | None = None,
        pin_memory: bool = False,
    ) -> None:
        windows = (block_size, batch_size, num_workers, train_samples_per_epoch, shuffle_seed)
        sizes = (num_train_tokens, num_val_tokens, num_test_tokens)
        source = ToyMarkov(vocab_size, branching, *sizes, seed=seed)
        super().__init__(*windows, pin_memory, source=source)

    @property
    def optimal_loss(self) -> float:
        """Cross-entropy (nats per token) of the true next-token distribution on train."""
        return self.source.optimal_loss(self.corpus.splits["train"])


class SST2DataModule(ClassificationDataModule):
    """GLUE SST-2 sentiment (`sources.sst2.SST2`)."""

    def __init__(
        self,
        data_dir: str | Path,
        cache_dir: str | Path | None = None,
        tokenizer_path: str | Path | None = None,
        wordpiece_vocab_size: int = 8192,
        max_len: int = 128,
        batch_size: int = 32,
        val_size: int | float = 872,
        split_seed: int = 1234,
        num_workers: int = 0,
        url_base: str | None = None,
        pin_memory: bool = False,
    ) -> None:
        source = SST2(data_dir, val_size, split_seed, url_base)
        tokenizer = (cache_dir, tokenizer_path, wordpiece_vocab_size)
        super().__init__(source, *tokenizer, max_len, batch_size, num_workers, pin_memory)


class ToySeq2SeqDataModule(Seq2SeqDataModule):
    """Copy, reverse or sort random symbols (`sources.toy_pairs.ToyPairs`)."""

    def __init__(
        self,
        transform: str = "reverse",
        vocab_size: int = 32,
        min_len: int = 4,
        max_len: int = 16,
        num_train: int = 20000,
        num_val: int = 1000,
        num_test: int = 1000,
        batch_size: int = 64,
        seed: int = 1234,
        num_workers: int = 0,
    ) -> None:
        sizes = (num_train, num_val, num_test)
        source = ToyPairs(transform, vocab_size, min_len, max_len, *sizes, seed=seed)
        super().__init__(source, batch_size=batch_size, num_workers=num_workers)
        self.max_len = max_len


class Multi30kDataModule(Seq2SeqDataModule):
    """Multi30k translation (`sources.multi30k.Multi30k`), token-budget batches."""

    source: Multi30k

    def __init__(
        self,
        data_dir: str | Path,
        cache_dir: str | Path | None = None,
        source_lang: str = "de",
        target_lang: str = "en",
        vocab: str = "joint",
        bpe_vocab_size: int = 8000,
        tgt_bpe_vocab_size: int | None = None,
        max_tokens: int = 4096,
        max_len: int = 256,
        max_lines: int | None = None,
        tokenizer_path: str | Path | None = None,
        seed: int = 1234,
        num_workers: int = 0,
        pin_memory: bool = False,
        download: bool = True,
        url_base: str | None = MULTI30K_URL_BASE,
    ) -> None:
        languages = (source_lang, target_lang)
        vocab_sizes = (vocab, bpe_vocab_size, tgt_bpe_vocab_size)
        files = (max_len, max_lines, tokenizer_path, download, url_base)
        source = Multi30k(data_dir, cache_dir, *languages, *vocab_sizes, *files)
        if max_tokens < max_len:
            raise ValueError(f"data.max_tokens={max_tokens} must hold one sequence of max_len")
        super().__init__(source, None, max_tokens, seed, num_workers, pin_memory)
        self.vocab, self.max_len, self.max_lines = vocab, max_len, max_lines

    @property
    def tokenizer(self) -> TranslationTokenizer:
        return self.source.tokenizer

    def lines(self, split: str, lang: str) -> list[str]:
        return self.source.lines(split, lang)
