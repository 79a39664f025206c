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

import torch.distributed as dist
from lightning_fabric.utilities.distributed import DistributedSamplerWrapper
from torch.utils.data import Sampler


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
    return DistributedSamplerWrapper(sampler, num_replicas=num_replicas, rank=rank, shuffle=False)
