"""Windows over a token stream: shifted labels, full coverage for evaluation, DDP sharding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from torch.utils.data import DataLoader, DistributedSampler

from attnlab.data.loading.lm_windows import RandomOffsetSampler, TokenWindows

TOKENS = np.arange(1000, dtype=np.uint16) % 97  # a stream whose values show their position


def test_labels_are_the_inputs_shifted_by_one() -> None:
    windows = TokenWindows(TOKENS, block_size=8)
    assert len(windows) == len(TOKENS) - 8
    item = windows[5]
    assert item["input_ids"].dtype == item["labels"].dtype == torch.long
    np.testing.assert_array_equal(item["input_ids"], TOKENS[5:13])
    np.testing.assert_array_equal(item["labels"], TOKENS[6:14])
    last = windows[len(windows) - 1]
    assert last["labels"][-1] == TOKENS[-1]
    with pytest.raises(IndexError):
        windows[len(windows)]


@pytest.mark.parametrize("length", [1000, 1001, 1009])
def test_evaluation_windows_cover_the_split_once_in_order(length: int) -> None:
    tokens = np.arange(length, dtype=np.int64)  # distinct ids: any repeat would show
    block = 10
    loader = DataLoader(TokenWindows(tokens, block, stride=block), batch_size=7)
    batches = list(loader)
    inputs = torch.cat([b["input_ids"] for b in batches]).reshape(-1)
    labels = torch.cat([b["labels"] for b in batches]).reshape(-1)
    scored = (length - 1) // block * block  # every label but a tail shorter than one block
    assert length - 1 - scored < block
    np.testing.assert_array_equal(labels, tokens[1 : scored + 1])
    np.testing.assert_array_equal(inputs, tokens[:scored])
    assert batches[0]["input_ids"].shape == (7, block)


def test_too_short_a_stream_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"8 tokens cannot fill one window of block_size=8"):
        TokenWindows(TOKENS[:8], block_size=8)


def test_sampler_draws_distinct_offsets_fresh_each_epoch() -> None:
    sampler = RandomOffsetSampler(num_windows=500, num_samples=100, seed=3)
    first = list(sampler)
    assert len(first) == len(sampler) == 100 and len(set(first)) == 100
    assert list(sampler) == first  # same epoch, same draw
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert list(RandomOffsetSampler(500, 100, seed=4)) != first


def test_sampler_asking_for_more_than_all_offsets_repeats_permutations() -> None:
    drawn = list(RandomOffsetSampler(num_windows=10, num_samples=25))
    assert len(drawn) == 25
    assert sorted(drawn[:10]) == list(range(10)) == sorted(drawn[10:20])


def _rank_windows(dataset: TokenWindows, sampler, epoch: int) -> tuple[list[int], torch.Tensor]:
    sampler.set_epoch(epoch)
    indices = list(sampler)
    return indices, torch.stack([dataset[i]["input_ids"] for i in indices])


def test_two_ddp_ranks_get_disjoint_fresh_training_windows() -> None:
    """What Lightning does under DDP: wrap our sampler, one wrapper per rank."""
    dataset = TokenWindows(np.random.default_rng(0).integers(0, 50_000, 5000), block_size=16)
    base = RandomOffsetSampler(len(dataset), num_samples=400, seed=7)
    ranks = [
        DistributedSamplerWrapper(base, num_replicas=2, rank=rank, shuffle=True, seed=0)
        for rank in range(2)
    ]
    (idx0, win0), (idx1, win1) = (_rank_windows(dataset, r, epoch=0) for r in ranks)
    assert len(idx0) == len(idx1) == 200
    assert not set(idx0) & set(idx1)
    assert not torch.equal(win0, win1)
    idx0_next, _ = _rank_windows(dataset, ranks[0], epoch=1)
    assert set(idx0_next) != set(idx0)  # set_epoch reached our sampler through the wrapper


def test_every_offset_under_a_plain_distributed_sampler_is_sharded() -> None:
    """With train_samples_per_epoch=None the dataset itself can be sharded the usual way."""
    dataset = TokenWindows(TOKENS, block_size=16)
    shards = [set(DistributedSampler(dataset, num_replicas=2, rank=r, seed=1)) for r in (0, 1)]
    assert len(shards[0] & shards[1]) <= 1  # at most the one index repeated to even them out
    assert shards[0] | shards[1] == set(range(len(dataset)))


def test_one_read_batch_equals_the_per_window_path() -> None:
    tokens = np.random.default_rng().integers(0, 65, 3000).astype(np.uint16)
    for stride in (1, 16):
        dataset = TokenWindows(tokens, block_size=16, stride=stride)
        indices = np.random.default_rng().integers(0, len(dataset), 32).tolist()
        indices.append(len(dataset) - 1)
        for index, item in zip(indices, dataset.__getitems__(indices), strict=True):
            one = dataset[index]
            assert torch.equal(one["input_ids"], item["input_ids"])
            assert torch.equal(one["labels"], item["labels"])
            assert item["input_ids"].dtype == torch.int64
    with pytest.raises(IndexError):
        dataset.__getitems__([len(dataset)])
