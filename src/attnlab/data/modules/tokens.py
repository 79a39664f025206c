"""Causal LM over prepared token shards (`attnlab-prepare`): `data=tokens data.path=DIR`.

Start-up reads the index and a cheap fingerprint of each shard (size and first/last 64 KiB),
then memory-maps the shards: its work does not grow with the corpus. Training draws windows in a
seeded order that needs O(1) memory even when an epoch is every window (`RandomOffsetSampler`),
a batch is gathered with one fancy index per shard it touches (`ShardWindows.__getitems__`), and
with `document_mask=true` each batch carries `document_ids` (B, T): cumsum(input_ids == eos_id)
along the window, since every document is preceded by EOS (loading/shards.py).

`prepare`: settings for `attnlab-prepare` (input, tokenizer, ...) to prepare `path` first if
it has no index; ranks wait on a file lock while the first prepares (the others then find it
done). Loader defaults: `num_workers=null` is 4 worker processes when CUDA is available (0 on
CPU, where spawning them costs more than the memmap reads they save) and `pin_memory=null`
pins when CUDA is available.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Dataset

from attnlab.data.loading.lm_windows import RandomOffsetSampler
from attnlab.data.loading.resumable import ResumableDataLoader, run_seed
from attnlab.data.loading.sharding import shard_by_rank
from attnlab.data.loading.shards import INDEX, TOKENIZER, ShardError, TokenIndex
from attnlab.data.modules.base import SPLITS, TaskDataModule, check_window_settings
from attnlab.data.spec import DataSpec


class ShardWindows(Dataset):
    """Windows of `block_size + 1` tokens every `stride` tokens inside each shard (a window
    never spans two shards). Items are dicts of 1-D int64 tensors, as `TokenWindows` gives."""

    def __init__(
        self,
        shards: Sequence[np.ndarray],
        block_size: int,
        stride: int = 1,
        eos_id: int | None = None,
    ) -> None:
        self.shards = [s for s in shards if len(s) >= block_size + 1]
        if not self.shards:
            raise ValueError(
                f"no shard holds one window of block_size={block_size} (plus one token)"
            )
        self.block_size, self.stride, self.eos_id = block_size, stride, eos_id
        counts = [(len(s) - block_size - 1) // stride + 1 for s in self.shards]
        self.bounds = np.concatenate([[0], np.cumsum(counts)]).tolist()  # (num_shards + 1,)

    def __len__(self) -> int:
        return self.bounds[-1]

    def _rows(self, indices: Sequence[int]) -> torch.Tensor:
        """(len(indices), block_size + 1) int64, one fancy-index read per shard touched."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"window index out of range for {len(self)} windows")
        shard_of = np.searchsorted(self.bounds, idx, side="right") - 1
        out = np.empty((len(idx), self.block_size + 1), dtype=np.int64)
        offsets = np.arange(self.block_size + 1)
        for s in np.unique(shard_of).tolist():
            rows = shard_of == s
            starts = (idx[rows] - self.bounds[s]) * self.stride
            out[rows] = self.shards[s][starts[:, None] + offsets]
        return torch.from_numpy(out)

    def _item(self, window: torch.Tensor) -> dict[str, torch.Tensor]:
        item = {"input_ids": window[..., :-1], "labels": window[..., 1:]}
        if self.eos_id is not None:  # the document each token is in (cumsum convention)
            item["document_ids"] = torch.cumsum(item["input_ids"] == self.eos_id, dim=-1)
        return item

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        s = bisect.bisect_right(self.bounds, index) - 1
        start = (index - self.bounds[s]) * self.stride
        window = self.shards[s][start : start + self.block_size + 1].astype(np.int64)
        return self._item(torch.from_numpy(window))

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        """A batch in one read; the rows are views that the default collate stacks."""
        batch = self._item(self._rows(indices))
        return [{key: value[i] for key, value in batch.items()} for i in range(len(indices))]


def _default_workers() -> int:
    return 4 if torch.cuda.is_available() else 0


class TokenShardsDataModule(TaskDataModule):
    """Next-token prediction over windows of the shards in `path` (see the module docstring)."""

    task = "causal_lm"

    def __init__(
        self,
        path: str | Path,
        block_size: int = 256,
        batch_size: int = 32,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        train_samples_per_epoch: int | None = None,
        shuffle_seed: int | None = None,
        document_mask: bool = False,
        prepare: Mapping[str, Any] | None = None,
    ) -> None:
        workers = _default_workers() if num_workers is None else num_workers
        pin = torch.cuda.is_available() if pin_memory is None else pin_memory
        super().__init__(batch_size, workers, pin)
        check_window_settings(block_size, batch_size, train_samples_per_epoch)
        self.path = Path(path)
        self.block_size = block_size
        self.train_samples_per_epoch = train_samples_per_epoch
        self.shuffle_seed = shuffle_seed
        self.document_mask = document_mask
        self.prepare_settings = dict(prepare) if prepare else None
        self._index: TokenIndex | None = None
        self._tokenizer: Tokenizer | None = None

    @property
    def index(self) -> TokenIndex:
        if self._index is None:
            if self.prepare_settings is not None and not (self.path / INDEX).is_file():
                from attnlab.data.corpus import PrepareSettings, prepare

                prepare(PrepareSettings(**{**self.prepare_settings, "out": str(self.path)}))
            self._index = TokenIndex.load(self.path)
            for split in self._index.splits:  # a missing or truncated shard: before any work
                self._index.open(split)
            self._tokenizer = Tokenizer.from_file(str(self.path / TOKENIZER))
        return self._index

    def prepare_data(self) -> None:
        self.index  # prepares `path` if asked to (first rank of each node)  # noqa: B018

    @property
    def spec(self) -> DataSpec:
        index = self.index
        tokenizer = self._tokenizer
        assert tokenizer is not None

        def encode(text: str) -> list[int]:
            return tokenizer.encode(text, add_special_tokens=False).ids

        def decode(ids: Sequence[int]) -> str:
            return tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

        return DataSpec(
            task=self.task,
            vocab_size=index.vocab_size,
            decode=decode,
            encode=encode,
            max_len=self.block_size,
            eos_id=index.eos_id,
            document_mask=self.document_mask,
        )

    def build_datasets(self) -> dict[str, ShardWindows]:
        index = self.index
        eos = index.eos_id if self.document_mask else None
        datasets = {}
        for split in SPLITS:
            shards = index.open(split)
            if sum(len(s) for s in shards) < self.block_size + 1:
                raise ShardError(
                    f"the {split} split of {self.path} has {index.tokens(split)} tokens, too few "
                    f"for data.block_size={self.block_size} (it needs block_size + 1)"
                )
            stride = 1 if split == "train" else self.block_size
            datasets[split] = ShardWindows(shards, self.block_size, stride, eos)
        return datasets

    def loader(self, split: str) -> DataLoader:
        dataset = self.datasets[split]
        if split != "train":
            return self.make_loader(dataset)
        seed = run_seed() if self.shuffle_seed is None else self.shuffle_seed
        sampler = RandomOffsetSampler(
            len(dataset), self.train_samples_per_epoch or len(dataset), seed
        )
        return self.make_loader(
            dataset, ResumableDataLoader, sampler=shard_by_rank(sampler), drop_last=True
        )
