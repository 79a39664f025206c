"""GLUE SST-2 sentence sentiment (0 negative, 1 positive), for fine-tuning an encoder.

Files: `<data_dir>/sst2/train.tsv` and `dev.tsv` (header `sentence<TAB>label`), plain or
gzipped. GLUE's test.tsv has no labels, so the splits are: train = train.tsv less a validation
sample, val = that sample (`val_size` examples, or a fraction; drawn uniformly with
`split_seed`, not stratified: in 872 examples a label's share is within about 3 points of
train's), and
test = dev.tsv (872 examples, the number papers report as SST-2 accuracy).

The tokenizer is the one in `tokenizer_path` (the tokenizer.json of the model being fine-tuned,
so that ids mean the same words), else WordPiece trained on the sentences of train.tsv (the
validation sample's included: no labels are used) and cached.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from attnlab.data.download import ensure_file, read_lines
from attnlab.data.packing import Lines
from attnlab.data.padding import collate_padded
from attnlab.data.resumable import EpochShuffleSampler, ResumableDataLoader, run_seed
from attnlab.data.sharding import shard_by_rank
from attnlab.data.spec import DataSpec
from attnlab.data.token_cache import TokenCache, source_key
from attnlab.data.wordpiece import (
    CLS_ID,
    PAD_ID,
    SEP_ID,
    WordPieceTokenizer,
    cached_wordpiece,
)

SHA256 = {
    "train.tsv": "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
    "dev.tsv": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
}
SOURCE = "GLUE SST-2 (glue_data/SST-2)"  # no stable public URL to download from
HEADER = "sentence\tlabel"
LABELS = ("0", "1")


def read_sst2(path: Path) -> tuple[list[str], np.ndarray]:
    """(sentences, labels) of a labelled SST-2 file."""
    lines = read_lines(path)
    if not lines or lines[0] != HEADER:
        found = lines[0] if lines else ""
        raise ValueError(f"{path} starts with {found!r}; an SST-2 file starts with {HEADER!r}")
    sentences, labels = [], []
    for number, line in enumerate(lines[1:], start=2):
        sentence, _, label = line.rpartition("\t")
        if label not in LABELS:
            raise ValueError(
                f"{path}, line {number}: label {label!r} is not one of {list(LABELS)} "
                f"(line {line!r})"
            )
        sentences.append(sentence.strip())  # GLUE's sentences end with a space
        labels.append(int(label))
    return sentences, np.asarray(labels, dtype=np.int64)


def split_off(num_examples: int, val_size: int | float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices), both sorted: a uniform random sample of `val_size`
    examples (a float in (0, 1): that fraction) is val, the rest train."""
    if isinstance(val_size, float):
        if not 0.0 < val_size < 1.0:
            raise ValueError(
                f"data.val_size={val_size} must be a count (int) or a fraction in (0, 1)"
            )
        val_size = round(val_size * num_examples)
    if not 0 < val_size < num_examples:
        raise ValueError(
            f"data.val_size={val_size} must be between 1 and {num_examples - 1}, "
            f"the training examples less one"
        )
    order = np.random.default_rng(seed).permutation(num_examples)
    return np.sort(order[val_size:]), np.sort(order[:val_size])


class LabelledSentences(Dataset):
    """Item i: {"input_ids": [CLS] sentence [SEP] cut to `max_len`, "labels": its class}."""

    def __init__(self, lines: Lines, labels: np.ndarray, indices: np.ndarray, max_len: int) -> None:
        self.lines = lines
        self.labels = labels
        self.indices = indices
        self.max_len = max_len

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        example = int(self.indices[index])
        tokens = self.lines.line(example)[: self.max_len - 2]
        ids = np.concatenate([[CLS_ID], tokens, [SEP_ID]]).astype(np.int64)
        return {"input_ids": torch.from_numpy(ids), "labels": int(self.labels[example])}


class SST2DataModule(pl.LightningDataModule):
    """SST-2 batches: input_ids (B, T) long, padding_mask (B, T) bool (True at padding),
    labels (B,) long; T is the longest sequence in the batch, at most `max_len`.

    `url_base`: where to download train.tsv and dev.tsv when they are missing (None: never).
    """

    task = "classification"
    num_classes = 2

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
        super().__init__()
        if max_len < 3:
            raise ValueError(f"data.max_len={max_len} must be at least 3: [CLS] a token [SEP]")
        if batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size} must be at least 1")
        self.directory = Path(data_dir) / "sst2"
        self.cache = TokenCache(cache_dir)
        self.tokenizer_path = tokenizer_path
        self.wordpiece_vocab_size = wordpiece_vocab_size
        self.max_len = max_len
        self.batch_size = batch_size
        self.val_size = val_size
        self.split_seed = split_seed
        self.num_workers = num_workers
        self.url_base = url_base
        self.pin_memory = pin_memory
        self._tokenizer: WordPieceTokenizer | None = None
        self.datasets: dict[str, LabelledSentences] = {}

    def file(self, name: str) -> Path:
        """train.tsv or dev.tsv, downloaded from `url_base` if missing."""
        url = f"{self.url_base}/{name}" if self.url_base else None
        return ensure_file(self.directory / name, url, SHA256[name], source=SOURCE)

    @property
    def tokenizer(self) -> WordPieceTokenizer:
        if self._tokenizer is None:
            if self.tokenizer_path is not None:
                self._tokenizer = WordPieceTokenizer.from_file(self.tokenizer_path)
            else:
                train = self.file("train.tsv")
                self._tokenizer = cached_wordpiece(
                    self.cache,
                    "sst2/wordpiece",
                    {"train": source_key(train)},
                    lambda: read_sst2(train)[0],
                    self.wordpiece_vocab_size,
                )
        return self._tokenizer

    @property
    def spec(self) -> DataSpec:
        tokenizer = self.tokenizer
        return DataSpec(
            task=self.task,
            vocab_size=tokenizer.vocab_size,
            decode=tokenizer.decode,
            encode=tokenizer.encode,
            max_len=self.max_len,
            pad_id=PAD_ID,
            num_classes=self.num_classes,
        )

    def _read(self, name: str) -> tuple[Lines, np.ndarray]:
        """Tokenised sentences (cached) and labels of train.tsv or dev.tsv."""
        path, tokenizer = self.file(name), self.tokenizer
        sentences, labels = read_sst2(path)
        stream = self.cache.tokens(
            f"sst2/{name}",
            {"source": source_key(path), "tokenizer": tokenizer.fingerprint},
            lambda: tokenizer.encode_lines(sentences),
            tokenizer.vocab_size,
        )
        return Lines.from_stream(stream, SEP_ID), labels

    def prepare_data(self) -> None:
        self.tokenizer  # noqa: B018  # finds or downloads the files, trains the tokenizer

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:  # Lightning calls setup once per stage; the splits do not change
            return
        train_lines, train_labels = self._read("train.tsv")
        train, val = split_off(len(train_labels), self.val_size, self.split_seed)
        test_lines, test_labels = self._read("dev.tsv")
        self.datasets = {
            "train": LabelledSentences(train_lines, train_labels, train, self.max_len),
            "val": LabelledSentences(train_lines, train_labels, val, self.max_len),
            "test": LabelledSentences(
                test_lines, test_labels, np.arange(len(test_labels)), self.max_len
            ),
        }

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        # Training order from (seed, epoch) and a saved position: a resumed run replays the
        # interrupted epoch and skips what it has seen (resumable.py).
        loader = ResumableDataLoader if shuffle else DataLoader
        sampler = shard_by_rank(EpochShuffleSampler(len(dataset), run_seed())) if shuffle else None
        return loader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_padded,
        )
