"""Sequence-to-sequence data: the (source, target) pairs of a source, padded per batch.

Batches: src (B, S) and tgt (B, T) long with BOS/EOS in place (as the source puts them),
right-padded with the source's pad id, and index (B,), each pair's position in its split
(hypotheses are written back in that order). Batches hold `batch_size` pairs, or with
`max_tokens` as many pairs as fit in that many padded tokens per side (`token_budget`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch.utils.data import DataLoader

from attnlab.data.loading.padding import pad_batch
from attnlab.data.loading.resumable import ResumableDataLoader, SkippableBatches
from attnlab.data.loading.token_budget import TokenBudgetBatchSampler
from attnlab.data.modules.base import TaskDataModule
from attnlab.data.sources.base import PairSource
from attnlab.data.spec import DataSpec


def collate_pairs(
    items: Sequence[tuple[list[int], list[int], int]], pad_id: int = 0
) -> dict[str, torch.Tensor]:
    return {
        "src": pad_batch([src for src, _, _ in items], pad_id),
        "tgt": pad_batch([tgt for _, tgt, _ in items], pad_id),
        "index": torch.tensor([index for _, _, index in items], dtype=torch.long),
    }


def non_pad_share(batches: Sequence[dict[str, torch.Tensor]], pad_id: int = 0) -> float:
    """Real tokens / padded tokens (src and tgt together) over `batches`."""
    real = padded = 0
    for batch in batches:
        for key in ("src", "tgt"):
            real += int((batch[key] != pad_id).sum())
            padded += batch[key].numel()
    return real / padded


class Seq2SeqDataModule(TaskDataModule):
    """Pairs of `source` (`sources.base.PairSource`), `batch_size` pairs a batch, or filled up
    to `max_tokens` padded tokens per side (batch order from `seed`, fresh every epoch)."""

    task = "seq2seq"

    def __init__(
        self,
        source: PairSource,
        batch_size: int | None = None,
        max_tokens: int | None = None,
        seed: int = 1234,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        if (batch_size is None) == (max_tokens is None):
            raise ValueError("set one of data.batch_size and data.max_tokens")
        super().__init__(batch_size, num_workers, pin_memory)
        self.source = source
        self.max_tokens = max_tokens
        self.seed = seed

    @property
    def shards_itself(self) -> bool:
        # Token-budget batch samplers shard DDP ranks themselves; Lightning cannot inject its
        # DistributedSampler into them, so build_trainer turns that off (use_distributed_sampler).
        return self.max_tokens is not None

    @property
    def spec(self) -> DataSpec:
        return self.source.spec

    def prepare_data(self) -> None:
        self.source.prepare()

    def build_datasets(self) -> dict:
        return self.source.datasets()

    def batch_sampler(self, split: str) -> TokenBudgetBatchSampler:
        dataset = self.datasets[split]
        assert self.max_tokens is not None
        return TokenBudgetBatchSampler(
            dataset.src_lengths,
            dataset.tgt_lengths,
            self.max_tokens,
            shuffle=split == "train",
            seed=self.seed,
        )

    def loader(self, split: str) -> DataLoader:
        collate = partial(collate_pairs, pad_id=self.source.pad_id)
        if self.max_tokens is None:
            return self.shuffled_or_in_order(split, collate_fn=collate)
        if split == "train":  # batches from (seed, epoch) and a saved position (resumable.py)
            loader, batches = ResumableDataLoader, SkippableBatches(self.batch_sampler(split))
        else:
            loader, batches = DataLoader, self.batch_sampler(split)
        dataset = self.datasets[split]
        return self.make_loader(dataset, loader, batch_sampler=batches, collate_fn=collate)

    def non_pad_share(self, split: str = "train") -> float:
        """Share of real tokens in one epoch's padded batches of `split` (src and tgt)."""
        self.setup()
        return non_pad_share(list(self.loader(split)), self.source.pad_id)
