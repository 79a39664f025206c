"""TokenMasker: BERT's 15% selection and 80/10/10 corruption, on a large random batch."""

from __future__ import annotations

import pytest
import torch

from attnlab.data.loading.masking import MaskingCollate, TokenMasker, mask_once
from attnlab.data.loading.padding import IGNORE_INDEX
from attnlab.data.tokenizers.wordpiece import CLS_ID, MASK_ID, PAD_ID, SEP_ID

VOCAB = 1000
SPECIALS = range(5)


def make_batch(rows: int = 512, max_len: int = 128, seed: int = 0) -> torch.Tensor:
    """[CLS] random words [SEP] [PAD]...; lengths from 3 to max_len."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(len(SPECIALS), VOCAB, (rows, max_len), generator=generator)
    lengths = torch.randint(3, max_len + 1, (rows,), generator=generator)
    ids[torch.arange(max_len) >= lengths[:, None]] = PAD_ID
    ids[:, 0] = CLS_ID
    ids[torch.arange(rows), lengths - 1] = SEP_ID
    return ids


@pytest.fixture(scope="module")
def masked() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids = make_batch()
    corrupted, labels = TokenMasker(VOCAB, MASK_ID, SPECIALS)(ids, torch.Generator().manual_seed(1))
    return ids, corrupted, labels


def test_selects_15_percent_of_eligible_tokens_never_specials(masked) -> None:
    ids, corrupted, labels = masked
    eligible = ids >= len(SPECIALS)
    selected = labels != IGNORE_INDEX
    assert not (selected & ~eligible).any()  # [CLS], [SEP] and padding are never selected
    assert selected.sum() / eligible.sum() == pytest.approx(0.15, abs=0.005)
    assert torch.equal(labels[selected], ids[selected])  # labels are the original ids
    assert torch.equal(corrupted[~selected], ids[~selected])  # nothing else changes
    per_row, eligible_per_row = selected.sum(1), eligible.sum(1)
    assert (per_row >= 1).all()
    # Each row gets floor(0.15 n) or ceil(0.15 n) of its n eligible tokens (and at least one).
    low = torch.floor(0.15 * eligible_per_row).clamp(min=1)
    assert ((per_row == low) | (per_row == low + 1)).all()


def test_of_the_selected_80_percent_masked_10_random_10_kept(masked) -> None:
    ids, corrupted, labels = masked
    selected = labels != IGNORE_INDEX
    n = selected.sum()
    to_mask = selected & (corrupted == MASK_ID)
    kept = selected & (corrupted == ids)
    replaced = selected & ~to_mask & ~kept
    assert to_mask.sum() / n == pytest.approx(0.8, abs=0.02)
    # A random replacement equal to the original (1 in 995) counts as kept.
    assert replaced.sum() / n == pytest.approx(0.1, abs=0.015)
    assert kept.sum() / n == pytest.approx(0.1, abs=0.015)
    assert (corrupted[replaced] >= len(SPECIALS)).all()  # random tokens are never special


def test_same_generator_seed_same_masks(masked) -> None:
    ids, corrupted, labels = masked
    masker = TokenMasker(VOCAB, MASK_ID, SPECIALS)
    again = masker(ids, torch.Generator().manual_seed(1))
    other = masker(ids, torch.Generator().manual_seed(2))
    assert torch.equal(again[0], corrupted) and torch.equal(again[1], labels)
    assert not torch.equal(other[1], labels)


def test_short_and_all_special_rows() -> None:
    ids = torch.tensor([[CLS_ID, 7, SEP_ID, PAD_ID], [CLS_ID, SEP_ID, PAD_ID, PAD_ID]])
    for seed in range(20):
        _, labels = TokenMasker(VOCAB, MASK_ID, SPECIALS)(ids, torch.Generator().manual_seed(seed))
        assert labels.tolist() == [
            [IGNORE_INDEX, 7, IGNORE_INDEX, IGNORE_INDEX],
            [IGNORE_INDEX] * 4,
        ]


def test_collate_pads_then_masks_and_mask_once_is_fixed() -> None:
    items = [{"input_ids": torch.tensor([CLS_ID, *range(10, 10 + n), SEP_ID])} for n in (3, 30)]
    masker = TokenMasker(VOCAB, MASK_ID, SPECIALS)
    batch = MaskingCollate(masker)(items)
    assert set(batch) == {"input_ids", "labels", "padding_mask", "mlm_positions"}
    assert batch["input_ids"].shape == batch["labels"].shape == (2, 32)
    assert batch["padding_mask"].sum(1).tolist() == [27, 0]
    assert (batch["labels"][batch["padding_mask"]] == IGNORE_INDEX).all()

    fixed = mask_once(items, masker, seed=5)
    assert [len(item["input_ids"]) for item in fixed] == [5, 32]  # padding taken off again
    for a, b in zip(fixed, mask_once(items, masker, seed=5), strict=True):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])


def test_bad_probability_names_the_key() -> None:
    with pytest.raises(ValueError, match=r"data\.mlm_probability=1\.5 must be in \(0, 1\]"):
        TokenMasker(VOCAB, MASK_ID, SPECIALS, probability=1.5)
