"""Causal language modelling (next-token prediction) over the token streams of a source.

The source (`sources.base.TokenStreams`) gives the token streams and vocabulary; this module
cuts them into random training windows and sequential evaluation windows.

The vocabulary is needed to build the model, before Lightning calls `prepare_data` or `setup`,
so the corpus is loaded on first use of `spec` (or of `prepare_data`/`setup`) and kept. Loading
is cheap after the first run: tokenizers and token arrays are cached on disk. In a DDP job every
rank loads it (the caches are written atomically, so ranks that race produce the same files).
"""

from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader

from attnlab.data.loading.lm_windows import RandomOffsetSampler, TokenWindows
from attnlab.data.loading.resumable import ResumableDataLoader
from attnlab.data.loading.sharding import shard_by_rank
from attnlab.data.modules.base import SPLITS, TaskDataModule, check_window_settings
from attnlab.data.sources.base import TokenizedCorpus, TokenStreams
from attnlab.data.spec import DataSpec


class CausalLMDataModule(TaskDataModule):
    """Next-token prediction over windows of `block_size` tokens of `source`.

    Training: `train_samples_per_epoch` windows at distinct random offsets per epoch, fresh each
    epoch (None: every offset once, in random order; that can make a very long epoch). The count
    is global: under DDP each rank gets its interleaved share, so the global batches do not depend
    on the number of devices (data/loading/sharding.py). Validation and test: non-overlapping
    windows covering the split in order (a tail shorter than a block is not scored). Under DDP
    Lightning shards those with a DistributedSampler that may repeat a few windows to even out
    the ranks; evaluate on one device for exact numbers.

    `shuffle_seed` seeds the training offsets; None follows the run seed (PL_GLOBAL_SEED, set by
    `seed_everything`), as Lightning's own DistributedSampler does. A subclass may override
    `load_corpus` instead of passing a source.
    """

    task = "causal_lm"

    def __init__(
        self,
        block_size: int = 64,
        batch_size: int = 32,
        num_workers: int = 0,
        train_samples_per_epoch: int | None = None,
        shuffle_seed: int | None = None,
        pin_memory: bool | None = None,
        *,
        source: TokenStreams | None = None,
    ) -> None:
        # None: pin host memory when batches go to a GPU (faster, asynchronous copies).
        pin = torch.cuda.is_available() if pin_memory is None else pin_memory
        super().__init__(batch_size, num_workers, pin)
        check_window_settings(block_size, batch_size, train_samples_per_epoch)
        self.source = source
        self.block_size = block_size
        self.train_samples_per_epoch = train_samples_per_epoch
        self.shuffle_seed = shuffle_seed
        self._corpus: TokenizedCorpus | None = None

    def load_corpus(self) -> TokenizedCorpus:
        """Token streams and vocabulary; called once."""
        if self.source is None:
            raise NotImplementedError("pass a source, or override load_corpus in a subclass")
        return self.source.load()

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

    def build_datasets(self) -> dict[str, TokenWindows]:
        splits = self.corpus.splits
        for split in SPLITS:
            if len(splits[split]) < self.block_size + 1:
                raise ValueError(
                    f"the {split} split has {len(splits[split])} tokens, too few for "
                    f"data.block_size={self.block_size} (it needs block_size + 1)"
                )
        return {
            "train": TokenWindows(splits["train"], self.block_size, stride=1),
            "val": TokenWindows(splits["val"], self.block_size, stride=self.block_size),
            "test": TokenWindows(splits["test"], self.block_size, stride=self.block_size),
        }

    def loader(self, split: str) -> DataLoader:
        dataset = self.datasets[split]
        if split != "train":
            return self.make_loader(dataset)
        seed = self.shuffle_seed
        if seed is None:
            seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        sampler = RandomOffsetSampler(
            len(dataset), self.train_samples_per_epoch or len(dataset), seed
        )
        # drop_last keeps every training batch the same shape (compiled models, throughput).
        # Under DDP each rank takes its interleaved share: the global batches are those of one
        # device with the global batch size (sharding.py).
        return self.make_loader(
            dataset, ResumableDataLoader, sampler=shard_by_rank(sampler), drop_last=True
        )


# The stable name old configs and checkpoints use (`attnlab.data.LanguageModelingDataModule`).
LanguageModelingDataModule = CausalLMDataModule
