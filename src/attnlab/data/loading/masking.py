"""BERT's masked-LM corruption, drawn per batch.

Of the tokens that may be masked (not special, not padding), a fraction `probability` is
selected in each sequence: floor(probability * n + u) of its n tokens with u ~ U(0, 1), which is
probability * n on average, and at least one when n > 0 (so a short sequence still teaches
something; this raises the rate a little for sequences of fewer than 1 / probability tokens).
Of the selected tokens 80% become [MASK], 10% a random non-special token and 10% stay as they
are; each selected token is a label, every other position is IGNORE_INDEX.

Batches also carry `mlm_positions` (B, S): the selected positions of each row, then unselected
ones (whose label is IGNORE_INDEX) up to S = `prediction_slots(T, probability)`, a bound on
the number selected that depends on the batch length T only. The task scores those S slots
(a gather of static shape) instead of `hidden[labels != IGNORE_INDEX]`, whose shape depends on
the values and which therefore waits for the device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from attnlab.data.loading.padding import IGNORE_INDEX, collate_padded


class TokenMasker:
    """`masker(input_ids, generator)` -> (corrupted input_ids, labels), both (B, T) long.

    `special_ids` (padding included) are never selected, nor drawn as random replacements.
    The draw depends only on the batch and `generator` (None: torch's global generator, which
    Lightning seeds and which DataLoader workers seed apart).
    """

    def __init__(
        self,
        vocab_size: int,
        mask_id: int,
        special_ids: Sequence[int],
        probability: float = 0.15,
        mask_fraction: float = 0.8,
        random_fraction: float = 0.1,
    ) -> None:
        if not 0.0 < probability <= 1.0:
            raise ValueError(f"data.mlm_probability={probability} must be in (0, 1]")
        if mask_fraction < 0 or random_fraction < 0 or mask_fraction + random_fraction > 1:
            raise ValueError(
                f"mask_fraction={mask_fraction} and random_fraction={random_fraction} must be "
                "non-negative and sum to at most 1"
            )
        self.special_ids = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
        self.replacements = torch.tensor(
            [i for i in range(vocab_size) if i not in set(special_ids)], dtype=torch.long
        )
        if len(self.replacements) == 0:
            raise ValueError(f"vocab_size={vocab_size} leaves no non-special token to mask")
        self.mask_id = mask_id
        self.probability = probability
        self.mask_fraction = mask_fraction
        self.random_fraction = random_fraction

    def __call__(
        self, input_ids: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        eligible = ~torch.isin(input_ids, self.special_ids)  # (B, T)
        selected = self._select(eligible, generator)
        labels = torch.where(selected, input_ids, IGNORE_INDEX)

        action = torch.rand(input_ids.shape, generator=generator)
        to_mask = selected & (action < self.mask_fraction)
        to_random = selected & ~to_mask & (action < self.mask_fraction + self.random_fraction)
        picks = torch.randint(len(self.replacements), input_ids.shape, generator=generator)
        corrupted = torch.where(to_mask, self.mask_id, input_ids)
        corrupted = torch.where(to_random, self.replacements[picks], corrupted)
        return corrupted, labels

    def _select(self, eligible: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """(B, T) bool: an exact number of eligible positions per row, chosen uniformly."""
        count = eligible.sum(dim=1)  # (B,)
        jitter = torch.rand(count.shape, generator=generator)
        k = torch.floor(self.probability * count + jitter).long()
        k = torch.minimum(k.clamp(min=1), count)
        # Random scores, ineligible positions last; a position is selected if its rank < k.
        scores = torch.rand(eligible.shape, generator=generator).masked_fill(~eligible, 2.0)
        ranks = scores.argsort(dim=1).argsort(dim=1)
        return ranks < k[:, None]


def prediction_slots(length: int, probability: float) -> int:
    """How many positions of a row of `length` tokens TokenMasker may select, at most.

    It selects floor(probability * n + u) of n <= length tokens, u < 1, or one: fewer than
    probability * length + 1 (the ceiling and + 1 leave room for float rounding).
    """
    return min(length, math.ceil(probability * length) + 1)


def with_prediction_positions(
    batch: dict[str, torch.Tensor], slots: int
) -> dict[str, torch.Tensor]:
    """Adds `mlm_positions` (B, S): each row's labelled positions in order, then unlabelled
    ones; S = min(slots, T)."""
    labels = batch["labels"]  # (B, T)
    unlabelled = (labels == IGNORE_INDEX).to(torch.int8)
    most = int((1 - unlabelled).sum(dim=1).max()) if labels.numel() else 0  # CPU, in the loader
    slots = min(slots, labels.size(1))
    if most > slots:
        raise ValueError(f"a row has {most} masked positions, more than its {slots} slots")
    # A stable sort puts labelled positions first, in order.
    batch["mlm_positions"] = torch.argsort(unlabelled, dim=1, stable=True)[:, :slots]
    return batch


class MaskingCollate:
    """DataLoader collate for training: pad the items, then mask them afresh (global RNG);
    adds `mlm_positions` (see `with_prediction_positions`)."""

    def __init__(self, masker: TokenMasker, pad_id: int = 0) -> None:
        self.masker = masker
        self.pad_id = pad_id

    def __call__(
        self, items: Sequence[Mapping[str, torch.Tensor | int]]
    ) -> dict[str, torch.Tensor]:
        batch = collate_padded(items, self.pad_id)
        batch["input_ids"], batch["labels"] = self.masker(batch["input_ids"])
        slots = prediction_slots(batch["labels"].size(1), self.masker.probability)
        return with_prediction_positions(batch, slots)


class MaskedCollate:
    """DataLoader collate for items masked already (`mask_once`, evaluation): pad them and add
    `mlm_positions` for masks drawn with `probability`."""

    def __init__(self, probability: float, pad_id: int = 0) -> None:
        self.probability = probability
        self.pad_id = pad_id

    def __call__(
        self, items: Sequence[Mapping[str, torch.Tensor | int]]
    ) -> dict[str, torch.Tensor]:
        batch = collate_padded(items, self.pad_id)
        slots = prediction_slots(batch["labels"].size(1), self.probability)
        return with_prediction_positions(batch, slots)


def mask_once(
    items: Sequence[Mapping[str, torch.Tensor | int]], masker: TokenMasker, seed: int
) -> list[dict[str, torch.Tensor | int]]:
    """Items with their masks drawn once, from `seed`, for evaluation.

    Every epoch then scores the same positions, whatever the batch size or number of workers,
    so validation numbers are comparable across epochs and runs.
    """
    if not items:
        return []
    batch = collate_padded(items)
    input_ids, labels = masker(batch["input_ids"], torch.Generator().manual_seed(seed))
    lengths = (~batch["padding_mask"]).sum(dim=1).tolist()
    return [
        {**item, "input_ids": input_ids[i, :n].clone(), "labels": labels[i, :n].clone()}
        for i, (item, n) in enumerate(zip(items, lengths, strict=True))
    ]
