"""Toy sequence-to-sequence tasks made from a seed: copy, reverse and sort.

Source: random symbols; target: the same symbols copied, reversed or sorted. Splits are disjoint
(no source sequence appears in two splits), so validation and test measure generalisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from attnlab.data.spec import DataSpec

PAD, BOS, EOS = 0, 1, 2
NUM_SPECIAL = 3
TRANSFORMS = {
    "copy": lambda xs: list(xs),
    "reverse": lambda xs: list(reversed(xs)),
    "sort": sorted,
}


class PairDataset(Dataset):
    """A list of (source, target) token-id lists; items are (source, target, index)."""

    def __init__(self, pairs: list[tuple[list[int], list[int]]]) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[list[int], list[int], int]:
        return (*self.pairs[index], index)


class ToyPairs:
    """Copy / reverse / sort over `vocab_size - 3` symbols (ids 0-2 are PAD, BOS, EOS)."""

    pad_id = PAD

    def __init__(
        self,
        transform: str = "reverse",
        vocab_size: int = 32,
        min_len: int = 4,
        max_len: int = 16,
        num_train: int = 20000,
        num_val: int = 1000,
        num_test: int = 1000,
        seed: int = 1234,
    ) -> None:
        if transform not in TRANSFORMS:
            raise ValueError(
                f"data.transform={transform!r} is not a toy task; "
                f"choose one of {sorted(TRANSFORMS)}"
            )
        if vocab_size <= NUM_SPECIAL:
            raise ValueError(f"data.vocab_size={vocab_size} must exceed the {NUM_SPECIAL} specials")
        if not 1 <= min_len <= max_len:
            raise ValueError(f"need 1 <= data.min_len <= data.max_len, got {min_len}, {max_len}")
        self.transform = transform
        self.vocab_size = vocab_size
        self.min_len, self.max_len = min_len, max_len
        self.split_sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.seed = seed

    @property
    def spec(self) -> DataSpec:
        return DataSpec(
            task="seq2seq",
            vocab_size=self.vocab_size,
            pad_id=PAD,
            bos_id=BOS,
            eos_id=EOS,
            decode=self.decode,
            max_len=self.max_len + 2,
        )

    @staticmethod
    def decode(ids: Sequence[int]) -> str:
        """Symbols as space-separated numbers, specials dropped."""
        return " ".join(str(i) for i in ids if i >= NUM_SPECIAL)

    def prepare(self) -> None:
        pass  # made from the seed: nothing to fetch

    def datasets(self) -> dict[str, PairDataset]:
        generator = torch.Generator().manual_seed(self.seed)
        transform = TRANSFORMS[self.transform]
        total = sum(self.split_sizes.values())
        seen: set[tuple[int, ...]] = set()
        sources: list[list[int]] = []
        # Rejection sampling keeps splits disjoint; give up rather than loop forever when the
        # length range cannot hold that many distinct sequences.
        for _ in range(20 * total):
            if len(sources) == total:
                break
            length = int(torch.randint(self.min_len, self.max_len + 1, (1,), generator=generator))
            src = torch.randint(NUM_SPECIAL, self.vocab_size, (length,), generator=generator)
            key = tuple(src.tolist())
            if key not in seen:
                seen.add(key)
                sources.append(list(key))
        if len(sources) < total:
            raise ValueError(
                f"could only make {len(sources)} distinct sequences of {total} requested; "
                "raise data.vocab_size or data.max_len, or lower the split sizes"
            )
        pairs = [(src, [BOS, *transform(src), EOS]) for src in sources]
        datasets, start = {}, 0
        for split, size in self.split_sizes.items():
            datasets[split] = PairDataset(pairs[start : start + size])
            start += size
        return datasets
