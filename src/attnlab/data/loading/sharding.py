"""Training order under DDP that does not depend on the number of devices.

Lightning shards a training sampler by wrapping it in a DistributedSamplerWrapper with
`shuffle=True`: each rank's share is drawn from a fresh permutation of the sampler's order, so the
global batches of a 2-device run are not the batches a 1-device run with twice the batch size
draws. `shard_by_rank` shards the order as it is instead: rank r of W takes items r, r + W,
r + 2W, ... of the sampler's epoch order, so the k-th batches of all ranks together hold exactly
the k-th batch of B x W items a single process would draw (same seed, same epoch). The result is a
DistributedSampler, which Lightning leaves as it is.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch.distributed as dist
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from torch.utils.data import DistributedSampler, Sampler


def process_group() -> tuple[int, int]:
    """(world size, rank) of the default process group; (1, 0) outside one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def shard_by_rank(
    sampler: Sampler[int], num_replicas: int | None = None, rank: int | None = None
) -> Sampler[int]:
    """This rank's interleaved share of `sampler` (the sampler itself for a single process).

    `num_replicas`/`rank` default to the torch.distributed group, which Lightning has set up by
    the time it asks a DataModule for its dataloaders. The wrapper forwards `set_epoch`. An order
    whose length is not a multiple of the world size is padded with its first items (as
    DistributedSampler does), so that every rank takes the same number of steps.
    """
    world, own_rank = process_group()
    num_replicas = world if num_replicas is None else num_replicas
    rank = own_rank if rank is None else rank
    if num_replicas == 1:
        return sampler
    if hasattr(sampler, "draw"):  # computes its order lazily: shard it without a list
        return LazyShard(sampler, num_replicas, rank)
    return DistributedSamplerWrapper(sampler, num_replicas=num_replicas, rank=rank, shuffle=False)


class LazyShard(DistributedSampler):
    """Rank `rank`'s interleaved share of a sampler with `draw(start, stop, step)`
    (RandomOffsetSampler): what DistributedSamplerWrapper(shuffle=False) gives, without its
    list of the whole epoch's order (O(1) memory for an epoch over every window). A
    DistributedSampler, so Lightning leaves it as it is."""

    def __init__(self, sampler: Any, num_replicas: int, rank: int) -> None:
        # Not DistributedSampler.__init__: it wants a dataset; these are what it sets.
        self.sampler, self.num_replicas, self.rank = sampler, num_replicas, rank
        self.epoch, self.seed, self.shuffle, self.drop_last = 0, 0, False, False
        self.num_samples = math.ceil(len(sampler) / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        n = len(self.sampler)
        yield from self.sampler.draw(self.rank, n, self.num_replicas)
        # Padding to an equal share per rank: the order's first items, as DistributedSampler.
        for k in range(n + (self.rank - n) % self.num_replicas, self.total_size, self.num_replicas):
            yield from self.sampler.draw(k - n, k - n + 1)
