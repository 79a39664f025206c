"""Next-token choice: top-k, top-p (nucleus), temperature and greedy decoding."""

from __future__ import annotations

import pytest
import torch

from attnlab.models import filter_logits, sample_next


@pytest.mark.parametrize("k", [1, 3, 10])
def test_top_k_keeps_exactly_k_largest(k: int) -> None:
    logits = torch.randn(4, 10)
    logits[0, :5] = 2.0  # ties at the k-th value must not let more than k through
    kept = filter_logits(logits, top_k=k).isfinite()  # (B, V)
    assert torch.all(kept.sum(-1) == k)
    # The kept logits are unchanged and none of them is below a dropped one.
    torch.testing.assert_close(filter_logits(logits, top_k=k)[kept], logits[kept])
    if k < logits.size(-1):
        smallest_kept = logits.masked_fill(~kept, float("inf")).amin(-1)
        largest_dropped = logits.masked_fill(kept, float("-inf")).amax(-1)
        assert torch.all(smallest_kept >= largest_dropped)


def test_top_k_larger_than_vocabulary_keeps_all() -> None:
    logits = torch.randn(2, 5)
    assert torch.equal(filter_logits(logits, top_k=50), logits)


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    probs = torch.tensor([0.1, 0.5, 0.15, 0.25])
    logits = torch.stack([probs.log(), probs.log() + 3.0])  # a shift changes nothing
    # Sorted: 0.5, 0.25, 0.15, 0.1 -> cumulative 0.5, 0.75, 0.9, 1.0.
    cases = {0.49: [1], 0.51: [1, 3], 0.74: [1, 3], 0.76: [1, 3, 2], 0.95: [0, 1, 2, 3]}
    for p, expected in cases.items():
        kept = filter_logits(logits, top_p=p).isfinite()
        for row in kept:
            assert sorted(row.nonzero().flatten().tolist()) == sorted(expected), p


def test_top_p_on_random_logits() -> None:
    logits = torch.randn(64, 50) * 2
    p = 0.7
    kept = filter_logits(logits, top_p=p).isfinite()
    probs = logits.softmax(-1)
    mass = (probs * kept).sum(-1)
    smallest_kept = probs.masked_fill(~kept, 2.0).amin(-1)
    assert torch.all(mass >= p - 1e-6)  # enough mass ...
    assert torch.all(mass - smallest_kept < p + 1e-6)  # ... and no token more than needed
    largest_dropped = probs.masked_fill(kept, -1.0).amax(-1)
    assert torch.all(largest_dropped <= smallest_kept)  # the most likely tokens are the ones kept


def test_top_p_always_keeps_the_most_likely_token() -> None:
    logits = torch.randn(8, 30)
    kept = filter_logits(logits, top_p=1e-6).isfinite()
    assert torch.all(kept.sum(-1) == 1)
    assert torch.equal(kept.float().argmax(-1), logits.argmax(-1))


def test_top_k_then_top_p() -> None:
    probs = torch.tensor([[0.4, 0.3, 0.2, 0.1]])
    # top_k=2 renormalises to 4/7, 3/7; the nucleus of 0.5 then needs only the first.
    kept = filter_logits(probs.log(), top_k=2, top_p=0.5).isfinite()
    assert kept.tolist() == [[True, False, False, False]]
    kept = filter_logits(probs.log(), top_k=3, top_p=0.6).isfinite()
    assert kept.tolist() == [[True, True, False, False]]


def test_temperature_zero_is_argmax() -> None:
    logits = torch.randn(16, 40)
    assert torch.equal(sample_next(logits, temperature=0.0), logits.argmax(-1))
    assert torch.equal(sample_next(logits, temperature=0.0, top_k=1, top_p=0.1), logits.argmax(-1))


def test_sampling_respects_filters_and_generator() -> None:
    logits = torch.randn(2000, 12)
    allowed = filter_logits(logits / 0.7, top_k=4, top_p=0.8).isfinite()
    draws = sample_next(logits, temperature=0.7, top_k=4, top_p=0.8)
    assert draws.shape == (2000,)
    assert torch.all(allowed.gather(-1, draws[:, None]))
    assert draws.unique().numel() > 1  # really sampling, not argmax

    same = [sample_next(logits, generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(*same)


def test_sampling_follows_the_tempered_distribution() -> None:
    logits = torch.tensor([1.0, 0.0, -1.0]).expand(20000, 3)
    for temperature in (0.5, 2.0):
        draws = sample_next(logits, temperature=temperature)
        freq = torch.bincount(draws, minlength=3).float() / draws.numel()
        torch.testing.assert_close(freq, (logits[0] / temperature).softmax(-1), atol=0.02, rtol=0)


def test_extra_leading_dimensions() -> None:
    assert sample_next(torch.randn(2, 3, 7)).shape == (2, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(top_k=0), "top_k"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(temperature=-1.0), "temperature"),
    ],
)
def test_invalid_settings_are_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample_next(torch.randn(2, 5), **kwargs)
