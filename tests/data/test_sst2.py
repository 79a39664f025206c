"""SST2DataModule on the real GLUE files: splits, batches, and a tokenizer given by path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from attnlab.data import MissingDataError, SST2DataModule, WordPieceTokenizer
from attnlab.data.sources.labelled import split_off
from attnlab.data.sources.sst2 import read_sst2
from attnlab.data.tokenizers.wordpiece import CLS_ID, PAD_ID, SEP_ID, train_wordpiece
from tests.data.conftest import assert_resumes_mid_epoch


@pytest.fixture(scope="module")
def sst2(sst2_data: Path, tmp_path_factory: pytest.TempPathFactory) -> SST2DataModule:
    data = SST2DataModule(
        sst2_data, tmp_path_factory.mktemp("cache"), wordpiece_vocab_size=4000, batch_size=16
    )
    data.setup("fit")
    return data


def test_splits_add_up_and_dev_is_the_test_set(sst2: SST2DataModule) -> None:
    sizes = {split: len(dataset) for split, dataset in sst2.datasets.items()}
    assert sizes == {"train": 67_349 - 872, "val": 872, "test": 872}
    train, val = sst2.datasets["train"].indices, sst2.datasets["val"].indices
    assert len(np.union1d(train, val)) == 67_349  # disjoint, and every example used
    test_labels = [sst2.datasets["test"][i]["labels"] for i in range(872)]
    assert np.bincount(test_labels).tolist() == [428, 444]
    train_labels = np.bincount(sst2.datasets["train"].labels)
    assert train_labels.tolist() == [29_780, 37_569]  # all of train.tsv, before the split


def test_split_is_seeded() -> None:
    a, b, c = split_off(1000, 100, seed=1), split_off(1000, 100, seed=1), split_off(1000, 100, 2)
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])
    assert len(split_off(1000, 0.05, seed=1)[1]) == 50
    with pytest.raises(ValueError, match=r"data\.val_size=1\.5 must be a count"):
        split_off(1000, 1.5, seed=1)
    with pytest.raises(ValueError, match=r"data\.val_size=1000 must be between 1 and 999"):
        split_off(1000, 1000, seed=1)


def test_batches(sst2: SST2DataModule) -> None:
    spec = sst2.spec
    assert (spec.task, spec.max_len, spec.pad_id, spec.vocab_size) == (
        "classification",
        128,
        0,
        4000,
    )
    assert sst2.num_classes == spec.num_classes == 2
    for loader in (sst2.train_dataloader(), sst2.val_dataloader(), sst2.test_dataloader()):
        batch = next(iter(loader))
        assert set(batch) == {"input_ids", "padding_mask", "labels"}
        ids, pad, labels = batch["input_ids"], batch["padding_mask"], batch["labels"]
        assert ids.dtype == labels.dtype == torch.long and pad.dtype == torch.bool
        assert labels.shape == (16,) and set(labels.tolist()) <= {0, 1}
        lengths = (~pad).sum(1)
        assert lengths.max() == ids.shape[1] <= 128
        assert (ids[:, 0] == CLS_ID).all() and (ids[pad] == PAD_ID).all()
        assert (ids[torch.arange(16), lengths - 1] == SEP_ID).all()
    sentences, _ = read_sst2(sst2.source.directory / "dev.tsv")
    first = sst2.datasets["test"][0]["input_ids"]
    assert spec.decode(first) == sst2.tokenizer.normalize(sentences[0])


def test_long_sentences_are_cut_to_max_len(sst2_data: Path, sst2: SST2DataModule) -> None:
    short = SST2DataModule(sst2_data, sst2.cache.cache_dir, wordpiece_vocab_size=4000, max_len=8)
    short.setup("fit")
    assert short.tokenizer.fingerprint == sst2.tokenizer.fingerprint  # cached, reused
    lengths = [len(short.datasets["train"][i]["input_ids"]) for i in range(200)]
    assert max(lengths) == 8
    assert all(short.datasets["train"][i]["input_ids"][-1] == SEP_ID for i in range(200))


def test_given_tokenizer_is_used_exactly(sst2_data: Path, tmp_path: Path) -> None:
    lines = ["a film about a dog", "the best movie of the year", "a dull , boring film"] * 20
    path = tmp_path / "pretrained" / "tokenizer.json"
    WordPieceTokenizer(train_wordpiece(lines, vocab_size=60)).save(path)
    pretrained = WordPieceTokenizer.from_file(path)
    data = SST2DataModule(sst2_data, tmp_path / "cache", tokenizer_path=path, max_len=32)
    assert data.tokenizer.fingerprint == pretrained.fingerprint
    assert data.spec.vocab_size == pretrained.vocab_size
    assert data.tokenizer.tokenizer.get_vocab() == pretrained.tokenizer.get_vocab()
    data.setup("test")
    ids = data.datasets["test"][0]["input_ids"][1:-1].tolist()
    sentences, _ = read_sst2(data.source.directory / "dev.tsv")
    assert ids == pretrained.encode(sentences[0])[:30]
    assert not list((tmp_path / "cache").rglob("*.tokenizer.json"))  # nothing trained


def test_missing_files_are_named(tmp_path: Path) -> None:
    data = SST2DataModule(tmp_path / "empty", tmp_path / "cache")
    with pytest.raises(MissingDataError) as error:
        data.prepare_data()
    message = str(error.value)
    assert "train.tsv is missing" in message and str(tmp_path / "empty" / "sst2") in message
    assert "GLUE SST-2" in message


def test_a_file_without_the_header_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "train.tsv").write_text("index\tsentence\n0\tgood\n")
    with pytest.raises(ValueError, match=r"starts with 'index\\tsentence'"):
        read_sst2(tmp_path / "sst2" / "train.tsv")


def test_training_loader_resumes_mid_epoch(sst2: SST2DataModule) -> None:
    assert_resumes_mid_epoch(sst2.train_dataloader)
