"""Fixed-length windows over a token stream, for training and evaluating a causal LM.

A window of `block_size + 1` tokens gives `input_ids` (its first block_size tokens) and `labels`
(the same shifted by one: the next token at every position). Items are dicts of 1-D int64 tensors
and the default collate stacks them into `{"input_ids": (B, T), "labels": (B, T)}`.

Training draws random windows the DDP-friendly way: the dataset is map-style, item i being the
window that starts at token i, and `RandomOffsetSampler` draws which offsets an epoch visits. In a
multi-GPU run every rank draws the same offsets and takes a disjoint, interleaved share of them
(`data.sharding.shard_by_rank`); no rank sees the same windows as another.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from attnlab.data.loading.permutation import FeistelPermutation
from attnlab.data.loading.resumable import SkippableSampler


class TokenWindows(Dataset):
    """Windows of `block_size + 1` tokens starting every `stride` tokens.

    stride=1 gives every start offset (training); stride=block_size gives non-overlapping
    windows that score every token once, except a tail shorter than a block (evaluation).
    """

    def __init__(self, tokens: np.ndarray, block_size: int, stride: int = 1) -> None:
        if len(tokens) < block_size + 1:
            raise ValueError(
                f"{len(tokens)} tokens cannot fill one window of block_size={block_size} "
                "(plus one token for the last label)"
            )
        if stride < 1:
            raise ValueError(f"stride={stride} must be at least 1")
        # Slices of the (possibly memory-mapped) array, not a sliding_window_view: a strided view
        # would be pickled as a full copy of every window when workers are spawned.
        self.tokens = tokens
        self.block_size = block_size
        self.stride = stride
        self.length = (len(tokens) - block_size - 1) // stride + 1

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"window {index} out of range for {self.length} windows")
        start = index * self.stride
        window = self.tokens[start : start + self.block_size + 1].astype(np.int64)
        window = torch.from_numpy(window)
        return {"input_ids": window[:-1], "labels": window[1:]}

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        """A batch of windows in one fancy-index read (the DataLoader calls this with a
        batch's indices); the rows are views that the default collate stacks."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.length):
            raise IndexError(f"window index out of range for {self.length} windows")
        starts = idx * self.stride
        rows = self.tokens[starts[:, None] + np.arange(self.block_size + 1)].astype(np.int64)
        rows = torch.from_numpy(rows)
        return [{"input_ids": row[:-1], "labels": row[1:]} for row in rows]


class RandomOffsetSampler(SkippableSampler):
    """`num_samples` random window indices per epoch, fresh every epoch.

    Indices are drawn without replacement; asking for as many as there are windows or more
    (`train_samples_per_epoch=None`: every window once) walks whole random permutations, each a
    `FeistelPermutation` computed as it goes: O(1) memory, whatever the corpus size. Fewer are
    drawn with Floyd's algorithm (O(num_samples)). The draw depends only on (seed, epoch), so
    every DDP rank draws the same list and `shard_by_rank` splits it into disjoint shares, also
    without materialising it (`draw`). Lightning calls `set_epoch` at the start of each epoch;
    call it yourself outside a Trainer.
    """

    def __init__(self, num_windows: int, num_samples: int, seed: int = 0) -> None:
        if num_windows < 1 or num_samples < 1:
            raise ValueError(f"need windows and samples, got {num_windows} and {num_samples}")
        super().__init__(seed)
        self.num_windows = num_windows
        self.num_samples = num_samples

    def __len__(self) -> int:
        return self.num_samples

    def order(self, rng: np.random.Generator) -> np.ndarray:
        # choice without replacement uses Floyd's algorithm when rest << num_windows: no O(n) work.
        return rng.choice(self.num_windows, self.num_samples, replace=False)

    def draw(self, start: int, stop: int, step: int = 1) -> Iterator[int]:
        """Items start, start + step, ... (< stop) of this epoch's order, computed lazily."""
        if self.num_samples < self.num_windows:
            order = self.order(np.random.default_rng([self.seed, self.epoch]))
            yield from order[start:stop:step].tolist()
            return
        chunk = (1 << 16) * step
        for begin in range(start, stop, chunk):
            ks = np.arange(begin, min(begin + chunk, stop), step, dtype=np.int64)
            passes, positions = np.divmod(ks, self.num_windows)
            out = np.empty_like(ks)
            for p in np.unique(passes).tolist():  # one or two passes per chunk
                perm = FeistelPermutation(self.num_windows, [self.seed, self.epoch, p])
                out[passes == p] = perm[positions[passes == p]]
            yield from out.tolist()

    def __iter__(self) -> Iterator[int]:
        return self.draw(self.take_skip(), self.num_samples)
