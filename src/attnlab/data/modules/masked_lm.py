"""Masked-LM pretraining data (BERT): packed lines of a corpus, WordPiece, dynamic masking.

Consecutive lines are packed greedily into sequences [CLS] tokens [SEP] of at most `max_len`
tokens (a line longer than that is cut into pieces; empty lines are skipped; WikiText's
"= Heading =" lines are kept as text). Sequences run across paragraph and article boundaries,
as RoBERTa's FULL-SENTENCES packing does. With `nsp=True` the lines are packed into segments
of at most (max_len - 3) // 2 tokens and paired as [CLS] A [SEP] B [SEP] (see `SegmentPairs`).

Masking (`masking.TokenMasker`) is drawn afresh for every training batch; validation and test
masks (and NSP pairs) are drawn once from `seed`, so every epoch scores the same positions.

The WordPiece tokenizer is trained on the training split (WikiText's `<unk>` kept as one token)
and cached, as are the token streams; `spec` and `tokenizer` load them on first use, before
`setup`. The same text and settings always train the same tokenizer, so ranks of a DDP job that
build it at once agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from attnlab.data.loading.masking import MaskedCollate, MaskingCollate, TokenMasker, mask_once
from attnlab.data.loading.packing import Lines, pack
from attnlab.data.loading.token_cache import TokenCache
from attnlab.data.modules.base import SPLITS, TaskDataModule, tokenizer_spec
from attnlab.data.modules.mlm_examples import PackedSequences, SegmentPairs
from attnlab.data.sources.base import TextSource
from attnlab.data.sources.text_sources import names, needs_files, text_source
from attnlab.data.spec import DataSpec
from attnlab.data.tokenizers.wordpiece import WordPieceTokenizer, cached_wordpiece


class MaskedLMDataModule(TaskDataModule):
    """BERT-style pretraining on `corpus`: a registered text source's name ("wikitext2",
    "shakespeare", "sst2", "toy": `sources.text_sources`) or a text source itself (e.g. local files,
    `sources.local_text.LocalText`).

    Batches: input_ids (B, T) long, with masked positions corrupted; labels (B, T) long, the
    original id at masked positions and -100 elsewhere; padding_mask (B, T) bool, True at
    padding; mlm_positions (B, S) long, the masked positions of each row then unmasked ones, S a
    bound on the masked count that depends on T only (`masking.with_prediction_positions`).
    With `nsp=True` also token_type_ids (B, T) long and next_sentence_label (B,) long
    (1: B follows A). T is the longest sequence of the batch, at most `max_len`.

    `tokenizer_path`: a tokenizer.json to use as it is (a checkpoint's, to evaluate it or go on
    pretraining it), instead of training one. `max_lines` keeps the first lines of each split
    only (quick runs and tests); the tokenizer is then trained on those lines. `seed` makes the
    toy text (`toy_train_lines` lines, and `toy_eval_lines` each for val and test) and the
    evaluation masks. `download=False` never fetches a missing file. The toy corpus needs no
    `data_dir`.
    """

    task = "masked_lm"

    def __init__(
        self,
        corpus: str | TextSource = "wikitext2",
        data_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
        tokenizer_path: str | Path | None = None,
        wordpiece_vocab_size: int = 8192,
        max_len: int = 128,
        mlm_probability: float = 0.15,
        nsp: bool = False,
        batch_size: int = 32,
        num_workers: int = 0,
        max_lines: int | None = None,
        seed: int = 1234,
        toy_train_lines: int = 20_000,
        toy_eval_lines: int = 2_000,
        download: bool = True,
        pin_memory: bool = False,
    ) -> None:
        if isinstance(corpus, str):
            if corpus not in names():
                raise ValueError(
                    f"data.corpus={corpus!r} is not a masked-LM corpus; choose one of {names()}"
                )
            if data_dir is None and needs_files(corpus):
                raise ValueError(
                    f"data.data_dir=None, but data.corpus={corpus!r} is read from files"
                )
        shortest = 5 if nsp else 3  # [CLS] a [SEP] (b [SEP])
        if max_len < shortest:
            raise ValueError(f"data.max_len={max_len} must be at least {shortest} (nsp={nsp})")
        if not 0.0 < mlm_probability <= 1.0:
            raise ValueError(f"data.mlm_probability={mlm_probability} must be in (0, 1]")
        if max_lines is not None and max_lines < 1:
            raise ValueError(f"data.max_lines={max_lines} must be at least 1 (or null for all)")
        super().__init__(batch_size, num_workers, pin_memory)
        self.corpus = corpus
        self.data_dir = data_dir
        self.cache = TokenCache(cache_dir)
        self.tokenizer_path = tokenizer_path
        self.wordpiece_vocab_size = wordpiece_vocab_size
        self.max_len = max_len
        self.mlm_probability = mlm_probability
        self.nsp = nsp
        self.max_lines = max_lines
        self.seed = seed
        self.toy_sizes = (toy_train_lines, toy_eval_lines)
        self.download = download
        self._text: TextSource | None = None if isinstance(corpus, str) else corpus
        self._tokenizer: WordPieceTokenizer | None = None

    @property
    def text(self) -> TextSource:
        """The corpus's lines (files are found or downloaded on first use)."""
        if self._text is None:
            assert isinstance(self.corpus, str)
            self._text = text_source(
                self.corpus,
                data_dir=self.data_dir,
                download=self.download,
                seed=self.seed,
                toy_train_lines=self.toy_sizes[0],
                toy_eval_lines=self.toy_sizes[1],
            )
        return self._text

    def lines(self, split: str) -> list[str]:
        return self.text.lines(split)[: self.max_lines]

    @property
    def tokenizer(self) -> WordPieceTokenizer:
        """The tokenizer in `tokenizer_path`, else WordPiece trained on the training lines and
        cached (see `wordpiece.cached_wordpiece`)."""
        if self._tokenizer is None and self.tokenizer_path is not None:
            # A checkpoint's tokenizer: no corpus needed (attnlab-fill-mask works offline).
            self._tokenizer = WordPieceTokenizer.from_file(self.tokenizer_path)
        if self._tokenizer is None:
            self._tokenizer = cached_wordpiece(
                self.cache,
                f"mlm/{self.text.name}/wordpiece",
                {"text": self.text.key, "max_lines": self.max_lines},
                lambda: self.lines("train"),
                self.wordpiece_vocab_size,
                self.text.whole_words,
                self.tokenizer_path,
            )
        return self._tokenizer

    @property
    def spec(self) -> DataSpec:
        return tokenizer_spec(self.task, self.tokenizer, self.max_len, next_sentence=self.nsp)

    @property
    def masker(self) -> TokenMasker:
        return TokenMasker(
            self.tokenizer.vocab_size,
            self.tokenizer.mask_id,
            self.tokenizer.special_ids,
            self.mlm_probability,
        )

    def token_stream(self, split: str) -> np.ndarray:
        """The split's lines as ids, each line followed by [SEP] (cached, memory-mapped)."""
        tokenizer = self.tokenizer
        return self.cache.tokens(
            f"mlm/{self.text.name}/{split}",
            {
                "text": self.text.key,
                "split": split,
                "max_lines": self.max_lines,
                "tokenizer": tokenizer.fingerprint,
            },
            lambda: tokenizer.encode_lines(self.lines(split)),
            tokenizer.vocab_size,
        )

    def prepare_data(self) -> None:
        for split in SPLITS:  # downloads and tokenises once, on the first rank of each node
            self.token_stream(split)

    def build_datasets(self) -> dict[str, Dataset | list]:
        masker, datasets = self.masker, {}
        for index, split in enumerate(SPLITS):
            if split == "test" and self.text.test_is_val:
                datasets["test"] = datasets["val"]
                continue
            # Each evaluation split gets its own fixed pairs and masks.
            seed = None if split == "train" else self.seed * len(SPLITS) + index
            examples = self._examples(split, seed)
            if len(examples) == 0:
                raise ValueError(
                    f"the {split} split of {self.text.name} gives no sequences "
                    f"(data.max_lines={self.max_lines})"
                )
            if seed is not None:
                examples = mask_once([examples[i] for i in range(len(examples))], masker, seed)
            datasets[split] = examples
        return datasets

    def _examples(self, split: str, seed: int | None) -> Dataset:
        tokenizer = self.tokenizer
        lines = Lines.from_stream(self.token_stream(split), tokenizer.sep_id)
        ids = (tokenizer.cls_id, tokenizer.sep_id)
        if not self.nsp:
            return PackedSequences(lines.content, pack(lines.lengths, self.max_len - 2), *ids)
        spans = pack(lines.lengths, (self.max_len - 3) // 2)
        return SegmentPairs(lines.content, spans, seed, *ids)

    def loader(self, split: str) -> DataLoader:
        # Training masks come from the global RNG, which ResumeState restores before the first
        # resumed batch is collated; evaluation masks were drawn once in `build_datasets`.
        if split == "train":
            collate = MaskingCollate(self.masker, self.tokenizer.pad_id)
        else:
            collate = MaskedCollate(self.mlm_probability, self.tokenizer.pad_id)
        return self.shuffled_or_in_order(split, collate_fn=collate)
