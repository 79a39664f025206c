"""Sentence classification data: the labelled sentences of a source, WordPiece, padded batches.

Batches: input_ids (B, T) long ([CLS] sentence [SEP], cut to `max_len`), padding_mask (B, T)
bool (True at padding), labels (B,) long; T is the longest sequence in the batch.

The tokenizer is the one in `tokenizer_path` (the tokenizer.json of the model being fine-tuned,
so that ids mean the same words), else WordPiece trained on the sentences of the training file
(a validation sample split off it included: no labels are used) and cached, as are the token
streams of each file.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from attnlab.data.loading.packing import Lines
from attnlab.data.loading.padding import collate_padded
from attnlab.data.loading.token_cache import TokenCache, source_key
from attnlab.data.modules.base import SPLITS, TaskDataModule, tokenizer_spec
from attnlab.data.sources.labelled import LabelledSource
from attnlab.data.spec import DataSpec
from attnlab.data.tokenizers.wordpiece import (
    CLS_ID,
    SEP_ID,
    WordPieceTokenizer,
    cached_wordpiece,
)


class LabelledSentences(Dataset):
    """Item i: {"input_ids": [CLS] sentence [SEP] cut to `max_len`, "labels": its class}."""

    def __init__(
        self,
        lines: Lines,
        labels: np.ndarray,
        indices: np.ndarray,
        max_len: int,
        cls_id: int = CLS_ID,
        sep_id: int = SEP_ID,
    ) -> None:
        self.cls_id, self.sep_id = cls_id, sep_id  # the tokenizer's (bert-base: 101, 102)
        self.lines = lines
        self.labels = labels
        self.indices = indices
        self.max_len = max_len

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        example = int(self.indices[index])
        tokens = self.lines.line(example)[: self.max_len - 2]
        ids = np.concatenate([[self.cls_id], tokens, [self.sep_id]]).astype(np.int64)
        return {"input_ids": torch.from_numpy(ids), "labels": int(self.labels[example])}


class ClassificationDataModule(TaskDataModule):
    """Classification of the sentences of `source` (`sources.labelled`)."""

    task = "classification"

    def __init__(
        self,
        source: LabelledSource,
        cache_dir: str | Path | None = None,
        tokenizer_path: str | Path | None = None,
        wordpiece_vocab_size: int = 8192,
        max_len: int = 128,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        if max_len < 3:
            raise ValueError(f"data.max_len={max_len} must be at least 3: [CLS] a token [SEP]")
        super().__init__(batch_size, num_workers, pin_memory)
        self.source = source
        self.cache = TokenCache(cache_dir)
        self.tokenizer_path = tokenizer_path
        self.wordpiece_vocab_size = wordpiece_vocab_size
        self.max_len = max_len
        self._tokenizer: WordPieceTokenizer | None = None

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    @property
    def tokenizer(self) -> WordPieceTokenizer:
        if self._tokenizer is None:
            self._tokenizer = cached_wordpiece(
                self.cache,
                f"{self.source.name}/wordpiece",
                self.source.tokenizer_key(),
                self.source.tokenizer_text,
                self.wordpiece_vocab_size,
                tokenizer_path=self.tokenizer_path,
            )
        return self._tokenizer

    @property
    def spec(self) -> DataSpec:
        return tokenizer_spec(self.task, self.tokenizer, self.max_len, num_classes=self.num_classes)

    def _read(self, file: str) -> tuple[Lines, np.ndarray]:
        """Tokenised sentences (cached) and class ids of one of the source's files."""
        path, tokenizer = self.source.path(file), self.tokenizer
        sentences, labels = self.source.read(path)
        stream = self.cache.tokens(
            f"{self.source.name}/{file}",
            {"source": source_key(path), "tokenizer": tokenizer.fingerprint},
            lambda: tokenizer.encode_lines(sentences),
            tokenizer.vocab_size,
        )
        return Lines.from_stream(stream, tokenizer.sep_id), labels

    def build_datasets(self) -> dict[str, LabelledSentences]:
        files = {file: self._read(file) for file in dict.fromkeys(self.source.files.values())}
        datasets = {}
        for split in SPLITS:
            lines, labels = files[self.source.files[split]]
            indices = self.source.indices(split, len(labels))
            datasets[split] = LabelledSentences(
                lines, labels, indices, self.max_len, self.tokenizer.cls_id, self.tokenizer.sep_id
            )
        return datasets

    def loader(self, split: str) -> DataLoader:
        return self.shuffled_or_in_order(
            split, collate_fn=partial(collate_padded, pad_id=self.tokenizer.pad_id)
        )
