"""What every task's DataModule shares: loader settings, datasets built once, the three loaders.

A task's DataModule says how to build its split datasets (`build_datasets`) and how to load one
split (`loader`); this class holds the loader settings and calls them as Lightning expects.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset

from attnlab.data.loading.resumable import (
    EpochShuffleSampler,
    ResumableDataLoader,
    run_seed,
)
from attnlab.data.loading.sharding import shard_by_rank
from attnlab.data.spec import DataSpec

SPLITS = ("train", "val", "test")


def tokenizer_spec(task: str, tokenizer: Any, max_len: int, **extra: Any) -> DataSpec:
    """The spec of data read by `tokenizer` (WordPiece: its ids, [PAD] as padding)."""
    return DataSpec(
        task=task,
        vocab_size=tokenizer.vocab_size,
        decode=tokenizer.decode,
        encode=tokenizer.encode,
        max_len=max_len,
        pad_id=tokenizer.pad_id,
        **extra,
    )


def check_window_settings(
    block_size: int, batch_size: int, train_samples_per_epoch: int | None
) -> None:
    """The checks every causal-LM windowing datamodule makes of its arguments."""
    if block_size < 1:
        raise ValueError(f"data.block_size={block_size} must be at least 1")
    if train_samples_per_epoch is not None and train_samples_per_epoch < batch_size:
        raise ValueError(
            f"data.train_samples_per_epoch={train_samples_per_epoch} must be at least "
            f"data.batch_size={batch_size} (or null for every window once per epoch)"
        )


class TaskDataModule(pl.LightningDataModule):
    """Base of the task DataModules: `task`, `spec`, `datasets` and the loaders."""

    task: str

    def __init__(self, batch_size: int | None, num_workers: int, pin_memory: bool) -> None:
        super().__init__()
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size} must be at least 1")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.datasets: dict[str, Any] = {}

    @property
    def spec(self) -> DataSpec:
        raise NotImplementedError

    def build_datasets(self) -> dict[str, Any]:
        """The train, val and test datasets; called once."""
        raise NotImplementedError

    def loader(self, split: str) -> DataLoader:
        raise NotImplementedError

    def prepare_data(self) -> None:
        self.spec  # downloads, trains the tokenizer, on the first rank of each node  # noqa: B018

    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:  # Lightning calls setup once per stage; the splits do not change
            self.datasets = self.build_datasets()

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def make_loader(
        self, dataset: Dataset, loader: type[DataLoader] = DataLoader, **kwargs: Any
    ) -> DataLoader:
        """A DataLoader with this module's worker settings (and batch size, unless batches come
        from a batch sampler)."""
        if "batch_sampler" not in kwargs:
            kwargs["batch_size"] = self.batch_size
        return loader(
            dataset,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            **kwargs,
        )

    def shuffled_or_in_order(self, split: str, **kwargs: Any) -> DataLoader:
        """Training: an order from (run seed, epoch) and a saved position, so a resumed run
        replays the interrupted epoch and skips what it has seen (resumable.py); under DDP each
        rank takes its interleaved share (sharding.py). Evaluation: in order."""
        dataset = self.datasets[split]
        if split != "train":
            return self.make_loader(dataset, shuffle=False, **kwargs)
        sampler = shard_by_rank(EpochShuffleSampler(len(dataset), run_seed()))
        return self.make_loader(dataset, ResumableDataLoader, sampler=sampler, **kwargs)
