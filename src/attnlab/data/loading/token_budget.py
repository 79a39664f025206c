"""Batches of similar-length pairs filled up to a token budget, instead of a fixed batch size.

Examples are sorted by (source length, target length) and cut greedily into batches whose padded
size, batch size x longest sequence, stays within `max_tokens` on the source side and on the
target side. Sorting keeps padding low; the budget keeps memory per step about constant.

Training shuffles: ties in length are broken at random and the batch order is shuffled, both
drawn from (seed, epoch), so every DDP rank draws the same batches and takes a disjoint share
(`rank::num_replicas`; the list is first padded with repeats so that ranks step together).
Evaluation keeps one fixed order. Lightning calls `set_epoch` each epoch (through
`batch_sampler.sampler`, which is the sampler itself); call it yourself outside a Trainer.
Under DDP the sampler shards itself, and Lightning must not try to inject its DistributedSampler
(it cannot, into a custom batch sampler): `trainer.use_distributed_sampler=false`, which
attnlab's build_trainer sets for DataModules marked `shards_itself`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler


def budget_batches(
    order: np.ndarray, src_lengths: np.ndarray, tgt_lengths: np.ndarray, max_tokens: int
) -> list[list[int]]:
    """Cut `order` (indices, sorted by length) into consecutive batches within the budget."""
    batches: list[list[int]] = []
    batch: list[int] = []
    longest_src = longest_tgt = 0
    for index in order.tolist():
        src, tgt = int(src_lengths[index]), int(tgt_lengths[index])
        if max(src, tgt) > max_tokens:
            raise ValueError(f"example {index} ({src}, {tgt} tokens) exceeds max_tokens")
        new_src, new_tgt = max(longest_src, src), max(longest_tgt, tgt)
        if batch and (len(batch) + 1) * max(new_src, new_tgt) > max_tokens:
            batches.append(batch)
            batch, new_src, new_tgt = [], src, tgt
        batch.append(index)
        longest_src, longest_tgt = new_src, new_tgt
    if batch:
        batches.append(batch)
    return batches


def _distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Lists of example indices, each within `max_tokens` padded tokens per side.

    `num_replicas`/`rank` default to the torch.distributed group (1/0 outside one).
    """

    def __init__(
        self,
        src_lengths: np.ndarray,
        tgt_lengths: np.ndarray,
        max_tokens: int,
        shuffle: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if len(src_lengths) != len(tgt_lengths) or len(src_lengths) == 0:
            raise ValueError("need as many source as target lengths, and at least one example")
        if max_tokens < 1:
            raise ValueError(f"data.max_tokens={max_tokens} must be positive")
        self.src_lengths = np.asarray(src_lengths, dtype=np.int64)
        self.tgt_lengths = np.asarray(tgt_lengths, dtype=np.int64)
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        world, own_rank = _distributed()
        self.num_replicas = world if num_replicas is None else num_replicas
        self.rank = own_rank if rank is None else rank
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is not in [0, {self.num_replicas})")
        self.epoch = 0
        # Lightning calls set_epoch on `batch_sampler.sampler`, never on the batch sampler.
        self.sampler = self
        # Ties broken at random permute only equal-length examples: the batch count is fixed.
        self._num_batches = len(self.batches_of_epoch())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches_of_epoch(self) -> list[list[int]]:
        """Every batch of this epoch, over all ranks, in the order they are served."""
        count = len(self.src_lengths)
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            ties = rng.permutation(count)
        else:
            rng, ties = None, np.arange(count)
        order = np.lexsort((ties, self.tgt_lengths, self.src_lengths))  # last key sorts first
        batches = budget_batches(order, self.src_lengths, self.tgt_lengths, self.max_tokens)
        if rng is not None:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __len__(self) -> int:
        return -(-self._num_batches // self.num_replicas)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches_of_epoch()
        total = len(self) * self.num_replicas
        batches += batches[: total - len(batches)]  # repeats so that every rank has len(self)
        return iter(batches[self.rank :: self.num_replicas])
