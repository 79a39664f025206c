"""data=tokens: memory-mapped shards, one-read batches, document_ids, O(1) epoch order."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

from attnlab.data.corpus import PrepareSettings, prepare
from attnlab.data.loading.lm_windows import RandomOffsetSampler
from attnlab.data.loading.sharding import LazyShard, shard_by_rank
from attnlab.data.modules.tokens import ShardWindows, TokenShardsDataModule
from attnlab.run.train import train
from tests.data.test_prepare import corpus, write_lines


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    path = write_lines(tmp_path / "a.txt", corpus(1500, seed=random.randrange(1 << 30)))
    out = tmp_path / "shards"
    prepare(
        PrepareSettings(
            out=str(out),
            input=str(path),
            tokenizer="char",
            workers=1,
            chunk_mb=4e-3,
            shard_mb=16e-3,
            val_fraction=0.05,
            test_fraction=0.05,
        )
    )
    return out


def test_one_read_batch_equals_the_per_window_path(prepared: Path) -> None:
    dm = TokenShardsDataModule(prepared, block_size=16, batch_size=8, document_mask=True)
    dm.setup("fit")
    train_set = dm.datasets["train"]
    assert len(train_set.shards) > 2
    indices = np.random.default_rng().integers(0, len(train_set), 64).tolist()
    indices += [train_set.bounds[1] - 1, train_set.bounds[1], len(train_set) - 1]  # shard edges
    batch = train_set.__getitems__(indices)
    for index, item in zip(indices, batch, strict=True):
        one = train_set[index]
        assert one.keys() == item.keys() == {"input_ids", "labels", "document_ids"}
        for key in one:
            assert torch.equal(one[key], item[key]), key
    # a window is the stream's tokens: the labels are the inputs shifted by one
    assert torch.equal(batch[0]["labels"][:-1], batch[0]["input_ids"][1:])


def test_document_ids_follow_the_eos_convention(prepared: Path) -> None:
    index_eos = json.loads((prepared / "index.json").read_text())["eos_id"]
    dm = TokenShardsDataModule(prepared, block_size=32, batch_size=4, document_mask=True)
    assert dm.spec.document_mask and dm.spec.eos_id == index_eos
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    ids = batch["input_ids"]
    assert batch["document_ids"].shape == ids.shape == (4, 32)
    assert batch["document_ids"].dtype == torch.int64
    expected = torch.cumsum(ids == index_eos, dim=-1)
    assert torch.equal(batch["document_ids"], expected)
    # every EOS starts a new document; tokens before the first EOS are document 0
    for row_ids, row_docs in zip(ids, batch["document_ids"], strict=True):
        starts = (row_ids == index_eos).nonzero().flatten().tolist()
        for a, b in zip(starts, [*starts[1:], 32], strict=False):  # none: one document
            assert len(set(row_docs[a:b].tolist())) == 1
    plain = TokenShardsDataModule(prepared, block_size=32, batch_size=4)
    plain.setup("fit")
    assert "document_ids" not in next(iter(plain.train_dataloader()))


def test_start_up_reads_only_the_fingerprints(tmp_path: Path) -> None:
    """An 8 MB shard: setting up reads a few hundred KB (index, tokenizer, 128 KiB per shard),
    and damage in the middle of the shard goes unnoticed until verify=true."""
    io_file = Path("/proc/self/io")
    if not io_file.is_file():
        pytest.skip("needs /proc/self/io (Linux) to count bytes read")
    rng = np.random.default_rng()
    text = "\n".join("".join(rng.choice(list("abcdefgh "), 2000)) for _ in range(2000))
    path = tmp_path / "a.txt"
    path.write_text(text + "\n")
    out = tmp_path / "shards"
    s = dict(out=str(out), input=str(path), tokenizer="char", workers=1, val_fraction=0.01)
    prepare(PrepareSettings(**s, test_fraction=0.01))
    shard = out / "train-00000.bin"
    assert shard.stat().st_size > 7_000_000

    def read_bytes() -> int:
        fields = dict(line.split(": ") for line in io_file.read_text().splitlines())
        return int(fields["rchar"])

    before = read_bytes()
    dm = TokenShardsDataModule(out, block_size=64, batch_size=8)
    dm.spec  # noqa: B018
    dm.setup("fit")
    assert len(dm.datasets["train"]) > 3_000_000
    assert read_bytes() - before < 1_000_000  # not the 8 MB

    with open(shard, "r+b") as file:  # damage the middle: the start-up check does not see it
        file.seek(4_000_000)
        file.write(b"\xff\xff")
    TokenShardsDataModule(out, block_size=64, batch_size=8).setup("fit")
    from attnlab.data.loading.shards import TokenIndex

    assert TokenIndex.load(out).verify() == ["train: train-00000.bin is corrupted (sha256 differs)"]


def test_start_up_refuses_a_truncated_shard(prepared: Path) -> None:
    shard = prepared / "train-00001.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(ValueError, match=r"train-00001.bin does not match .*index.json"):
        TokenShardsDataModule(prepared, block_size=16, batch_size=8).setup("fit")


def test_missing_index_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data.path=.* holds no index.json: prepare it first"):
        TokenShardsDataModule(tmp_path, block_size=16).spec  # noqa: B018


def test_prepare_on_first_use(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.txt", corpus(600, seed=1))
    settings = {
        "input": str(path),
        "tokenizer": "char",
        "workers": 1,
        "val_fraction": 0.05,
        "test_fraction": 0.05,
    }
    dm = TokenShardsDataModule(tmp_path / "out", block_size=16, prepare=settings)
    dm.prepare_data()
    assert (tmp_path / "out" / "index.json").is_file() and dm.spec.vocab_size > 10


@pytest.mark.parametrize("n", [1, 7, 1000, 5003])
def test_every_window_epoch_is_a_lazy_permutation(n: int) -> None:
    seed = random.randrange(1 << 20)
    sampler = RandomOffsetSampler(n, n, seed=seed)
    first = list(sampler)
    assert sorted(first) == list(range(n))
    assert list(sampler) == first  # a pure function of (seed, epoch)
    sampler.set_epoch(1)
    if n > 7:
        assert list(sampler) != first
    more = list(RandomOffsetSampler(n, 2 * n + 3, seed=seed))
    assert sorted(more[:n]) == sorted(more[n : 2 * n]) == list(range(n))  # whole passes first
    assert more[:n] == first


def test_every_window_epoch_resumes_mid_epoch() -> None:
    sampler = RandomOffsetSampler(10_000, 10_000, seed=5)
    sampler.set_epoch(3)
    whole = list(sampler)
    sampler.skip_once(3, 1234)
    assert list(sampler) == whole[1234:]
    assert list(sampler) == whole  # once only


@pytest.mark.parametrize("num_samples", [999, 1000, 2501])
def test_lazy_shards_are_what_the_distributed_wrapper_gives(num_samples: int) -> None:
    sampler = RandomOffsetSampler(1000, num_samples, seed=9)
    for world in (2, 3):
        for rank in range(world):
            lazy = shard_by_rank(sampler, world, rank)
            assert isinstance(lazy, LazyShard)
            wrapper = DistributedSamplerWrapper(
                sampler, num_replicas=world, rank=rank, shuffle=False
            )
            for epoch in (0, 2):
                lazy.set_epoch(epoch)
                wrapper.set_epoch(epoch)
                assert list(lazy) == list(wrapper)
                assert len(lazy) == len(wrapper) == math.ceil(num_samples / world)


def test_windows_never_span_shards() -> None:
    shards = [np.arange(10), np.arange(100, 105), np.arange(200, 220)]
    windows = ShardWindows(shards, block_size=4, stride=1)
    assert len(windows) == 6 + 1 + 16
    rows = [
        windows[i]["input_ids"].tolist() + windows[i]["labels"][-1:].tolist()
        for i in range(len(windows))
    ]
    assert all(row == list(range(row[0], row[0] + 5)) for row in rows)


TINY_TOKENS = [
    "model=gpt",
    "model.d_model=32",
    "model.n_heads=2",
    "model.n_layers=2",
    "data=tokens",
    "data.block_size=16",
    "data.batch_size=4",
    "trainer.max_steps=3",
    "trainer.val_check_interval=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.log_every_n_steps=1",
    "trainer.accelerator=cpu",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "print_config=false",
]


@pytest.mark.parametrize("document_mask", [False, True])
def test_data_tokens_trains_through_the_config(
    train_config, prepared: Path, document_mask: bool
) -> None:
    cfg = train_config(
        f"data.path={prepared}", f"data.document_mask={document_mask}", base=TINY_TOKENS
    )
    result = train(cfg)
    assert result["global_step"] == 3
    assert math.isfinite(result["metrics"]["val/loss"]) and math.isfinite(
        result["metrics"]["test/loss"]
    )
