"""Greedy and beam search over the encoder-decoder's KV cache, against uncached decoding and
exhaustive search, with fresh random models."""

from __future__ import annotations

import itertools

import pytest
import torch

from attnlab.models import EncoderDecoder
from attnlab.run.train import train
from attnlab.tasks.decoding import beam_search, greedy_decode

BOS, EOS, PAD = 1, 2, 0


def random_model(vocab: int = 6, seed: int = 0) -> EncoderDecoder:
    torch.manual_seed(seed)
    model = EncoderDecoder(vocab, 16, 2, 1, 2, 32, dropout=0.0, max_len=16).eval()
    with torch.no_grad():  # sharpen the output so hypotheses differ clearly
        model.lm_head.weight.mul_(4.0)
    return model


def source(batch: int = 3, length: int = 5, vocab: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    src = torch.randint(3, vocab, (batch, length))
    mask = torch.zeros(batch, length, dtype=torch.bool)
    mask[0, 3:] = True  # one padded source
    return src, mask


def uncached_greedy(model, src, mask, max_len):
    """The textbook loop: re-run the decoder on the whole prefix at every step."""
    memory = model.encode(src, mask)
    ys = torch.full((src.size(0), 1), BOS)
    finished = torch.zeros(src.size(0), dtype=torch.bool)
    for _ in range(max_len - 1):
        next_id = model.decode(ys, memory, mask)[:, -1].argmax(-1).masked_fill(finished, PAD)
        ys = torch.cat([ys, next_id[:, None]], 1)
        finished |= next_id == EOS
        if finished.all():
            break
    return ys


def test_cached_decoder_logits_match_the_full_decoder() -> None:
    model = random_model()
    src, mask = source()
    tgt = torch.randint(3, 6, (3, 7))
    memory = model.encode(src, mask)
    full = model.decode(tgt, memory, mask)
    caches = model.new_caches()
    steps = [model.decode(tgt[:, t : t + 1], memory, mask, caches=caches) for t in range(7)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_with_cache_equals_uncached_greedy(seed: int) -> None:
    model = random_model(seed=seed)
    src, mask = source()
    torch.testing.assert_close(
        greedy_decode(model, src, mask, BOS, EOS, PAD, max_len=8),
        uncached_greedy(model, src, mask, max_len=8),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_of_one_is_greedy(seed: int) -> None:
    model = random_model(seed=seed)
    src, mask = source()
    greedy = greedy_decode(model, src, mask, BOS, EOS, PAD, max_len=8)
    beam = beam_search(model, src, mask, BOS, EOS, PAD, max_len=8, beam_size=1, length_penalty=0)
    for g, b in zip(greedy.tolist(), beam.tolist(), strict=True):
        assert [t for t in g if t != PAD] == [t for t in b if t != PAD]


def sequence_log_prob(model, src, mask, generated: list[int]) -> float:
    tgt = torch.tensor([[BOS, *generated]])
    memory = model.encode(src, mask)
    log_probs = model.decode(tgt[:, :-1], memory, mask).log_softmax(-1)[0]
    return sum(log_probs[t, token].item() for t, token in enumerate(generated))


@pytest.mark.parametrize(("seed", "length_penalty"), [(0, 0.0), (1, 1.0), (2, 0.6)])
def test_wide_beam_finds_the_exhaustive_best(seed: int, length_penalty: float) -> None:
    """With a beam wider than the whole hypothesis space, beam search is exact."""
    vocab, steps = 5, 3
    model = random_model(vocab, seed)
    src, mask = source(batch=1, vocab=vocab)
    best, best_score = None, float("-inf")
    for length in range(1, steps + 1):
        for generated in itertools.product(range(vocab), repeat=length):
            # Shorter than max: must end at EOS; at max length, with or without EOS.
            if EOS in generated[:-1] or (length < steps and generated[-1] != EOS):
                continue
            score = sequence_log_prob(model, src, mask, list(generated)) / length**length_penalty
            if score > best_score:
                best, best_score = list(generated), score
    out = beam_search(
        model,
        src,
        mask,
        BOS,
        EOS,
        PAD,
        max_len=steps + 1,
        beam_size=vocab**steps,
        length_penalty=length_penalty,
    )
    row = out[0].tolist()
    assert row[0] == BOS
    assert row[1 : 1 + len(best)] == best and all(t == PAD for t in row[1 + len(best) :])


def test_beam_search_rows_are_independent_of_the_batch() -> None:
    model = random_model(seed=3)
    src, mask = source(batch=4)
    together = beam_search(model, src, mask, BOS, EOS, PAD, max_len=8, beam_size=3)
    for b in range(4):
        alone = beam_search(model, src[b : b + 1], mask[b : b + 1], BOS, EOS, PAD, 8, 3)
        row = [t for t in together[b].tolist() if t != PAD]
        assert row == [t for t in alone[0].tolist() if t != PAD]


def test_seq2seq_runs_evaluate_with_beam_search(train_config) -> None:
    result = train(train_config("task.beam_size=3", "task.length_penalty=0.6"))
    assert {"test/exact_match", "test/bleu"} <= set(result["metrics"])


def test_bad_beam_size_names_the_key(train_config) -> None:
    with pytest.raises(ValueError, match=r"task\.beam_size=0"):
        train(train_config("task.beam_size=0"))
