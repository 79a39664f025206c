"""The base of every language-modelling DataModule: token streams cut into windows.

A subclass says how to get its token streams and vocabulary (`load_corpus`); this class turns
them into random training windows and sequential evaluation windows.

The vocabulary is needed to build the model, before Lightning calls `prepare_data` or `setup`,
so the corpus is loaded on first use of `spec` (or of `prepare_data`/`setup`) and kept. Loading
is cheap after the first run: tokenizers and token arrays are cached on disk. In a DDP job every
rank loads it (the caches are written atomically, so ranks that race produce the same files).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from attnlab.data.lm_windows import RandomOffsetSampler, TokenWindows
from attnlab.data.resumable import ResumableDataLoader
from attnlab.data.sharding import shard_by_rank
from attnlab.data.spec import DataSpec

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TokenizedCorpus:
    """Token streams of the splits and the vocabulary that reads them."""

    splits: Mapping[str, np.ndarray]  # "train", "val", "test" -> 1-D ids
    vocab_size: int
    encode: Callable[[str], list[int]]
    decode: Callable[[Sequence[int]], str]
    eos_id: int | None = None


class LanguageModelingDataModule(pl.LightningDataModule):
    """Next-token prediction over windows of `block_size` tokens.

    Training: `train_samples_per_epoch` windows at distinct random offsets per epoch, fresh each
    epoch (None: every offset once, in random order; that can make a very long epoch). The count
    is global: under DDP each rank gets its interleaved share, so the global batches do not depend
    on the number of devices (data/sharding.py). Validation and test: non-overlapping windows
    covering the split in order (a tail shorter than a block is not scored). Under DDP Lightning
    shards those with a DistributedSampler that may repeat a few windows to even out the ranks;
    evaluate on one device for exact numbers.

    `shuffle_seed` seeds the training offsets; None follows the run seed (PL_GLOBAL_SEED, set by
    `seed_everything`), as Lightning's own DistributedSampler does.
    """

    task = "causal_lm"

    def __init__(
        self,
        block_size: int = 64,
        batch_size: int = 32,
        num_workers: int = 0,
        train_samples_per_epoch: int | None = None,
        shuffle_seed: int | None = None,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        for key, value in (("block_size", block_size), ("batch_size", batch_size)):
            if value < 1:
                raise ValueError(f"data.{key}={value} must be at least 1")
        if train_samples_per_epoch is not None and train_samples_per_epoch < batch_size:
            raise ValueError(
                f"data.train_samples_per_epoch={train_samples_per_epoch} must be at least "
                f"data.batch_size={batch_size} (or null for every offset once per epoch)"
            )
        self.block_size = block_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_samples_per_epoch = train_samples_per_epoch
        self.shuffle_seed = shuffle_seed
        self.pin_memory = pin_memory
        self._corpus: TokenizedCorpus | None = None
        self.datasets: dict[str, TokenWindows] = {}

    def load_corpus(self) -> TokenizedCorpus:
        """Token streams and vocabulary; called once. Subclasses implement it."""
        raise NotImplementedError

    @property
    def corpus(self) -> TokenizedCorpus:
        if self._corpus is None:
            self._corpus = self.load_corpus()
        return self._corpus

    @property
    def spec(self) -> DataSpec:
        corpus = self.corpus
        return DataSpec(
            task=self.task,
            vocab_size=corpus.vocab_size,
            decode=corpus.decode,
            encode=corpus.encode,
            max_len=self.block_size,
            eos_id=corpus.eos_id,
        )

    def prepare_data(self) -> None:
        self.corpus  # downloads and tokenises once, on the first rank of each node  # noqa: B018

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:  # Lightning calls setup once per stage; the windows do not change
            return
        splits = self.corpus.splits
        for split in SPLITS:
            if len(splits[split]) < self.block_size + 1:
                raise ValueError(
                    f"the {split} split has {len(splits[split])} tokens, too few for "
                    f"data.block_size={self.block_size} (it needs block_size + 1)"
                )
        self.datasets = {
            "train": TokenWindows(splits["train"], self.block_size, stride=1),
            "val": TokenWindows(splits["val"], self.block_size, stride=self.block_size),
            "test": TokenWindows(splits["test"], self.block_size, stride=self.block_size),
        }

    def train_dataloader(self) -> DataLoader:
        dataset = self.datasets["train"]
        seed = self.shuffle_seed
        if seed is None:
            seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        sampler = RandomOffsetSampler(
            len(dataset), self.train_samples_per_epoch or len(dataset), seed
        )
        # drop_last keeps every training batch the same shape (compiled models, throughput).
        # Under DDP each rank takes its interleaved share: the global batches are those of one
        # device with the global batch size (sharding.py).
        return self._loader(
            dataset, sampler=shard_by_rank(sampler), drop_last=True, loader=ResumableDataLoader
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["val"])

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["test"])

    def _loader(
        self, dataset: TokenWindows, loader: type[DataLoader] = DataLoader, **kwargs
    ) -> DataLoader:
        return loader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            **kwargs,
        )
