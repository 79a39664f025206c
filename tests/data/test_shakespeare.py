"""Tiny Shakespeare, character level, on the real file (and downloaded from a local server)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from attnlab.data import MissingDataError, ShakespeareCharDataModule
from attnlab.data.sources.shakespeare import SHA256


def test_splits_and_vocabulary_match_nanogpt(shakespeare_data: Path, tmp_path: Path) -> None:
    data = ShakespeareCharDataModule(shakespeare_data, cache_dir=tmp_path)
    splits = data.corpus.splits
    assert (len(splits["train"]), len(splits["val"])) == (1_003_854, 111_540)
    assert splits["test"] is splits["val"]  # no test split of its own
    spec = data.spec
    assert (spec.task, spec.vocab_size, spec.max_len) == ("causal_lm", 65, 64)
    assert spec.pad_id is spec.bos_id is spec.eos_id is None
    text = (shakespeare_data / "tinyshakespeare" / "input.txt").read_text()
    assert spec.vocab_size == len(set(text))
    assert spec.decode(splits["train"][:40]) == text[:40]
    assert spec.decode(splits["val"]) == text[1_003_854:]


def test_encode_decode_round_trip(shakespeare_data: Path, tmp_path: Path) -> None:
    spec = ShakespeareCharDataModule(shakespeare_data, cache_dir=tmp_path).spec
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
    ids = spec.encode(text)
    assert len(ids) == len(text) and spec.decode(ids) == text
    assert ids[text.index("\n")] == 0  # ids are ranks in sorted order; newline sorts first
    with pytest.raises(ValueError, match=r"characters \['é'\] are not in the vocabulary of 65"):
        spec.encode("café")


def test_batches_are_shifted_windows(shakespeare_data: Path, tmp_path: Path) -> None:
    data = ShakespeareCharDataModule(
        shakespeare_data, cache_dir=tmp_path, block_size=32, batch_size=4
    )
    data.setup("fit")
    train_batch = next(iter(data.train_dataloader()))
    val_batch = next(iter(data.val_dataloader()))
    for batch in (train_batch, val_batch):
        assert batch["input_ids"].shape == batch["labels"].shape == (4, 32)
        assert batch["input_ids"].dtype == batch["labels"].dtype == torch.long
        assert torch.equal(batch["input_ids"][:, 1:], batch["labels"][:, :-1])
    val = torch.from_numpy(data.corpus.splits["val"][: 4 * 32 + 1].astype(np.int64))
    assert torch.equal(val_batch["input_ids"].reshape(-1), val[:-1])
    assert torch.equal(val_batch["labels"].reshape(-1), val[1:])
    assert len(data.train_dataloader()) == 100_000 // 4


def test_token_cache_is_reused(shakespeare_data: Path, tmp_path: Path) -> None:
    assert ShakespeareCharDataModule(shakespeare_data, cache_dir=tmp_path).corpus.vocab_size == 65
    (npy,) = tmp_path.rglob("*.npy")
    mtime = npy.stat().st_mtime_ns
    again = ShakespeareCharDataModule(shakespeare_data, cache_dir=tmp_path).corpus
    assert npy.stat().st_mtime_ns == mtime
    assert isinstance(again.splits["train"], np.memmap)
    assert again.splits["train"].dtype == np.uint16


def test_missing_file_is_downloaded(shakespeare_data: Path, http_server, tmp_path: Path) -> None:
    base, served = http_server
    shutil.copyfile(shakespeare_data / "tinyshakespeare" / "input.txt", served / "input.txt")
    data_dir = tmp_path / "data"
    data = ShakespeareCharDataModule(data_dir, tmp_path / "cache", url=f"{base}/input.txt")
    assert data.spec.vocab_size == 65
    assert (data_dir / "tinyshakespeare" / "input.txt").stat().st_size == 1_115_394


def test_wrong_file_on_the_server_is_refused(http_server, tmp_path: Path) -> None:
    base, served = http_server
    (served / "input.txt").write_text("not Shakespeare\n")
    data = ShakespeareCharDataModule(tmp_path / "data", tmp_path / "cache", url=f"{base}/input.txt")
    with pytest.raises(ValueError, match=rf"expected {SHA256}"):
        data.spec  # noqa: B018
    assert not (tmp_path / "data" / "tinyshakespeare" / "input.txt").exists()


def test_no_download_says_where_the_file_goes(tmp_path: Path) -> None:
    data = ShakespeareCharDataModule(tmp_path / "empty", tmp_path / "cache", url=None)
    with pytest.raises(MissingDataError) as error:
        data.prepare_data()
    message = str(error.value)
    assert "input.txt" in message and str(tmp_path / "empty" / "tinyshakespeare") in message
    assert "raw.githubusercontent.com/karpathy/char-rnn" in message
