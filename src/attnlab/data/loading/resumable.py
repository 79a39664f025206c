"""Training data that can resume mid-epoch: the same order after a restart, minus what was seen.

Lightning saves the state of a training dataloader that has `state_dict`/`load_state_dict` in
every checkpoint (`loops.fit_loop.state_dict.combined_loader`) and loads it back before the first
`iter()` of a resumed fit. `ResumableDataLoader` implements that interface: its state is the
sampler's epoch and the number of batches already handed out in that epoch. Combined with a
sampler whose order depends only on (seed, epoch) (`EpochShuffleSampler`, `RandomOffsetSampler`),
a resumed epoch replays the interrupted epoch's order and skips the batches already trained on.

Lightning does not prefetch from sized dataloaders, so "batches handed out" is exactly "batches
the loop has trained on" when a checkpoint is written.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler


def run_seed() -> int:
    """The run's seed (set by `seed_everything` as PL_GLOBAL_SEED), 0 without one."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class SkippableSampler(Sampler[int]):
    """A sampler whose epoch order is a pure function of (seed, epoch) and can skip its head."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, samples to skip) once

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_once(self, epoch: int, samples: int) -> None:
        """The next pass over `epoch` starts `samples` indices in (a resumed epoch)."""
        self._resume = (epoch, samples)

    def order(self, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def take_skip(self) -> int:
        """Indices to skip at the start of this pass (a resumed epoch), 0 otherwise; once."""
        if self._resume is None:
            return 0
        epoch, samples = self._resume
        self._resume = None
        return samples if epoch == self.epoch else 0  # a stale skip must not cut a new epoch

    def __iter__(self) -> Iterator[int]:
        indices = self.order(np.random.default_rng([self.seed, self.epoch]))
        return iter(indices[self.take_skip() :].tolist())


class EpochShuffleSampler(SkippableSampler):
    """A fresh permutation of `num_items` every epoch, reproducible from (seed, epoch).

    Replaces `shuffle=True`, whose order comes from the global torch RNG and so cannot be
    replayed after a restart.
    """

    def __init__(self, num_items: int, seed: int = 0) -> None:
        super().__init__(seed)
        self.num_items = num_items

    def __len__(self) -> int:
        return self.num_items

    def order(self, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(self.num_items)


class SkippableBatches(Sampler[list[int]]):
    """Wraps a batch sampler whose batches are a pure function of (seed, epoch), such as the
    token-budget sampler, so that a resumed epoch starts k batches in without loading the
    skipped ones. `sampler` is the wrapped one's (Lightning calls `batch_sampler.sampler
    .set_epoch`), and so are the epoch and seed ResumableDataLoader reads.
    """

    def __init__(self, batch_sampler: Sampler[list[int]]) -> None:
        self.batch_sampler = batch_sampler
        self.sampler = getattr(batch_sampler, "sampler", batch_sampler)
        self._skip = 0

    def skip_once(self, batches: int) -> None:
        self._skip = batches

    def __getattr__(self, name: str) -> Any:
        # Anything else (epoch, max_tokens, num_replicas, ...) is the wrapped sampler's.
        if name == "batch_sampler":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.batch_sampler, name)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[list[int]]:
        # A generator: the skip is read at the first next(), after ResumableDataLoader set it.
        skip, self._skip = self._skip, 0
        yield from itertools.islice(self.batch_sampler, skip, None)


class ResumableDataLoader(DataLoader):
    """A DataLoader with the `state_dict`/`load_state_dict` Lightning saves in checkpoints.

    Its own `generator` (seeded from the sampler's seed and epoch) gives the worker base seed,
    so creating an iterator does not draw from the global torch RNG that dropout and masking
    use; that keeps those streams identical in a resumed run.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batches = 0  # handed out in the current pass
        self._skip = 0  # batches to skip at the next pass (set by load_state_dict)

    def _order_sampler(self) -> Any:
        """What sets the epoch's order: `batch_sampler.sampler` (Lightning calls its
        set_epoch; the sampler itself for batch_size loaders), else `sampler`."""
        inner = getattr(self.batch_sampler, "sampler", None)
        return inner if hasattr(inner, "set_epoch") else self.sampler

    def _sampler_epoch(self) -> int:
        return getattr(self._order_sampler(), "epoch", 0)

    def __iter__(self) -> Iterator[Any]:
        seed = getattr(self._order_sampler(), "seed", 0)
        self.generator = torch.Generator().manual_seed(
            int(np.random.SeedSequence([seed, self._sampler_epoch()]).generate_state(1)[0])
        )
        return self._counting(super().__iter__())

    def _counting(self, iterator: Iterator[Any]) -> Iterator[Any]:
        # A generator: this runs at the first next(), after Lightning has loaded a resumed
        # state (it may do so after calling iter()) and set the sampler's epoch.
        skip, self._skip = self._skip, 0
        if skip:
            # Skip indices before the sampler starts (it starts at the first next(), unless
            # worker processes have already drawn indices); else load and drop the batches.
            if isinstance(self.batch_sampler, SkippableBatches) and self.num_workers == 0:
                self.batch_sampler.skip_once(skip)
            elif (
                isinstance(self.sampler, SkippableSampler)
                and self.batch_size is not None
                and self.num_workers == 0
            ):
                self.sampler.skip_once(self._sampler_epoch(), skip * self.batch_size)
            else:
                for _ in range(skip):
                    next(iterator, None)
        self._batches = skip
        for batch in iterator:
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._sampler_epoch(), "batches": self._batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        batches = state.get("batches", 0)
        order = self._order_sampler()
        if hasattr(order, "set_epoch"):
            # Lightning calls set_epoch after creating the first iterator of a resumed fit;
            # worker processes would draw indices before that.
            order.set_epoch(state.get("epoch", 0))
        # A finished epoch (end-of-epoch checkpoint) resumes at the next one: nothing to skip.
        self._skip = batches if batches < len(self) else 0
