"""MaskedLMDataModule on the toy text, and on small slices of WikiText-2 and Tiny Shakespeare."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from attnlab.data import MaskedLMDataModule, MissingDataError
from attnlab.data.loading.download import read_lines
from attnlab.data.loading.padding import IGNORE_INDEX
from attnlab.data.modules.mlm_examples import SegmentPairs
from attnlab.data.tokenizers.wordpiece import CLS_ID, MASK_ID, PAD_ID, SEP_ID
from tests.data.conftest import assert_resumes_mid_epoch

TOY = {"corpus": "toy", "toy_train_lines": 2_000, "toy_eval_lines": 400}


def make(cache_dir: Path, **kwargs) -> MaskedLMDataModule:
    settings = {**TOY, "wordpiece_vocab_size": 200, "max_len": 32, "batch_size": 16}
    return MaskedLMDataModule(cache_dir=cache_dir, **{**settings, **kwargs})


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> MaskedLMDataModule:
    data = make(tmp_path_factory.mktemp("cache"))
    data.setup("fit")
    return data


@pytest.fixture(scope="module")
def toy_nsp(tmp_path_factory: pytest.TempPathFactory) -> MaskedLMDataModule:
    data = make(tmp_path_factory.mktemp("cache"), nsp=True)
    data.setup("fit")
    return data


def check_batch(batch: dict[str, torch.Tensor], max_len: int, vocab_size: int) -> None:
    """Shapes, dtypes, [CLS] first and [SEP] last, padding and labels where they belong."""
    ids, labels, pad = batch["input_ids"], batch["labels"], batch["padding_mask"]
    assert ids.dtype == labels.dtype == torch.long and pad.dtype == torch.bool
    assert ids.shape == labels.shape == pad.shape and ids.shape[1] <= max_len
    lengths = (~pad).sum(1)
    assert lengths.max() == ids.shape[1]  # padded to the longest sequence, no further
    assert (ids[:, 0] == CLS_ID).all()
    assert (ids[torch.arange(len(ids)), lengths - 1] == SEP_ID).all()
    assert (ids[pad] == PAD_ID).all() and (labels[pad] == IGNORE_INDEX).all()
    scored = labels != IGNORE_INDEX
    assert (scored.sum(1) >= 1).all()
    assert (labels[scored] >= 5).all() and (labels[scored] < vocab_size).all()
    assert not (scored & ((ids == CLS_ID) | (ids == SEP_ID))).any()
    assert (ids[ids == MASK_ID].numel()) > 0
    assert ids.max() < vocab_size
    # The fixed-size prediction slots hold every labelled position (the rest are unlabelled).
    positions = batch["mlm_positions"]
    gathered = torch.zeros_like(scored).scatter_(1, positions, True)
    assert (gathered >= scored).all()
    assert (labels.gather(1, positions) != IGNORE_INDEX).sum() == scored.sum()


def test_spec_is_known_before_setup(tmp_path: Path) -> None:
    data = make(tmp_path)
    spec = data.spec
    assert (spec.task, spec.max_len, spec.pad_id, spec.bos_id, spec.eos_id) == (
        "masked_lm",
        32,
        0,
        None,
        None,
    )
    assert spec.vocab_size == data.tokenizer.vocab_size <= 200
    assert spec.decode(spec.encode("the dogs chase the cat .")) == "the dogs chase the cat ."
    assert data.tokenizer.path is not None and data.tokenizer.path.is_file()
    assert not data.datasets


def test_a_given_tokenizer_needs_no_corpus_files(toy: MaskedLMDataModule, tmp_path: Path) -> None:
    """A checkpoint's tokenizer (attnlab-fill-mask, fine-tuning) gives the spec without reading
    or downloading the corpus: WikiText-2 is absent from this data_dir."""
    saved = tmp_path / "tokenizer.json"
    saved.write_text(toy.tokenizer.to_json())
    data = MaskedLMDataModule(
        corpus="wikitext2",
        data_dir=tmp_path / "no_data",
        cache_dir=tmp_path / "cache",
        tokenizer_path=str(saved),
        download=False,
        max_len=32,
    )
    assert data.spec.vocab_size == toy.tokenizer.vocab_size
    assert data.spec.encode("the dogs chase the cat .") == toy.spec.encode(
        "the dogs chase the cat ."
    )


def test_toy_batches(toy: MaskedLMDataModule) -> None:
    train, val = next(iter(toy.train_dataloader())), next(iter(toy.val_dataloader()))
    for batch in (train, val):
        assert set(batch) == {"input_ids", "labels", "padding_mask", "mlm_positions"}
        assert len(batch["input_ids"]) == 16
        check_batch(batch, 32, toy.spec.vocab_size)
    scored = (train["labels"] != IGNORE_INDEX).sum() / (~train["padding_mask"]).sum()
    assert 0.1 < scored < 0.2


def test_packed_sequences_hold_the_text_in_order(toy: MaskedLMDataModule) -> None:
    first = toy.datasets["train"][0]["input_ids"]
    assert first[0] == CLS_ID and first[-1] == SEP_ID and 20 < len(first) <= 32
    text = " ".join(toy.lines("train")[:10])
    assert text.startswith(toy.tokenizer.decode(first))  # consecutive lines, whole lines first
    # Every token of the training text is in exactly one sequence.
    dataset = toy.datasets["train"]
    total = sum(len(dataset[i]["input_ids"]) - 2 for i in range(len(dataset)))
    assert total == len(toy.tokenizer.encode_lines(toy.lines("train"))) - 2_000


def test_validation_masks_are_fixed_training_masks_are_fresh(
    toy: MaskedLMDataModule, tmp_path: Path
) -> None:
    first, again = list(toy.val_dataloader()), list(toy.val_dataloader())
    other = make(tmp_path, batch_size=16)  # another module, same settings
    other.setup("validate")
    for a, b, c in zip(first, again, other.val_dataloader(), strict=True):
        for key in a:
            assert torch.equal(a[key], b[key]) and torch.equal(a[key], c[key])
    val, test = next(iter(toy.val_dataloader())), next(iter(toy.test_dataloader()))
    assert not torch.equal(val["input_ids"], test["input_ids"])  # toy test: its own text

    batches = []
    for _ in range(2):  # the same sequences, masked twice
        items = [toy.datasets["train"][i] for i in range(16)]
        batches.append(toy.train_dataloader().collate_fn(items))
    assert torch.equal(batches[0]["padding_mask"], batches[1]["padding_mask"])
    assert not torch.equal(batches[0]["labels"], batches[1]["labels"])


def test_next_sentence_pairs(toy_nsp: MaskedLMDataModule) -> None:
    batch = next(iter(toy_nsp.train_dataloader()))
    assert set(batch) == {
        "input_ids",
        "labels",
        "padding_mask",
        "token_type_ids",
        "next_sentence_label",
        "mlm_positions",
    }
    check_batch(batch, 32, toy_nsp.spec.vocab_size)
    assert batch["token_type_ids"].dtype == batch["next_sentence_label"].dtype == torch.long
    assert batch["next_sentence_label"].shape == (16,)
    for ids, types, pad in zip(
        batch["input_ids"], batch["token_type_ids"], batch["padding_mask"], strict=True
    ):
        first_sep, second_sep = torch.nonzero(ids == SEP_ID).flatten().tolist()
        assert (types[: first_sep + 1] == 0).all() and (
            types[first_sep + 1 :][~pad[first_sep + 1 :]] == 1
        ).all()
        assert second_sep == int((~pad).sum()) - 1

    labels = torch.cat([b["next_sentence_label"] for b in toy_nsp.val_dataloader()])
    assert labels.float().mean() == pytest.approx(0.5, abs=0.06)
    assert set(labels.tolist()) == {0, 1}


def test_positive_pairs_are_consecutive_segments() -> None:
    content = np.arange(100, 160)
    bounds = np.arange(0, 61, 5)  # 12 segments of 5 tokens
    pairs = SegmentPairs(content, bounds, seed=0)
    labels = []
    for index in range(len(pairs)):
        item = pairs[index]
        first, second = item["input_ids"][1:6], item["input_ids"][7:12]
        follows = int(second[0]) == int(first[-1]) + 1
        assert follows == bool(item["next_sentence_label"])
        assert int(second[0]) != int(first[0])  # a random B is never A itself
        labels.append(item["next_sentence_label"])
    again = SegmentPairs(content, bounds, seed=0)
    assert [again[i]["next_sentence_label"] for i in range(len(again))] == labels


@pytest.fixture(scope="module")
def wikitext(wikitext_data: Path, tmp_path_factory: pytest.TempPathFactory) -> MaskedLMDataModule:
    data = MaskedLMDataModule(
        "wikitext2",
        wikitext_data,
        tmp_path_factory.mktemp("cache"),
        wordpiece_vocab_size=1000,
        max_len=64,
        batch_size=8,
        max_lines=1500,
        download=False,
    )
    data.setup("fit")
    return data


def test_wikitext_batches(wikitext: MaskedLMDataModule) -> None:
    assert wikitext.spec.vocab_size == 1000
    for loader in (wikitext.train_dataloader(), wikitext.val_dataloader()):
        check_batch(next(iter(loader)), 64, 1000)
    assert all(len(wikitext.datasets["test"][i]["input_ids"]) <= 64 for i in range(50))
    unk = wikitext.tokenizer.encode("<unk>")
    assert len(unk) == 1 and unk[0] >= 5  # WikiText's rare-word marker is one ordinary token
    assert unk[0] in wikitext.token_stream("train")


def test_wikitext_tokenizer_and_tokens_are_cached(
    wikitext: MaskedLMDataModule, wikitext_data: Path
) -> None:
    cache_dir = wikitext.cache.cache_dir
    built = {p: p.stat().st_mtime_ns for p in cache_dir.rglob("*") if p.is_file()}
    again = MaskedLMDataModule(
        "wikitext2",
        wikitext_data,
        cache_dir,
        wordpiece_vocab_size=1000,
        max_len=64,
        max_lines=1500,
        download=False,
    )
    assert again.tokenizer.fingerprint == wikitext.tokenizer.fingerprint
    again.prepare_data()
    assert {p: p.stat().st_mtime_ns for p in cache_dir.rglob("*") if p.is_file()} == built


def test_shakespeare_pairs_and_test_is_val(shakespeare_data: Path, tmp_path: Path) -> None:
    data = MaskedLMDataModule(
        "shakespeare",
        shakespeare_data,
        tmp_path,
        wordpiece_vocab_size=800,
        max_len=48,
        batch_size=8,
        nsp=True,
        max_lines=2000,
        download=False,
    )
    data.setup("fit")
    assert data.datasets["test"] is data.datasets["val"]
    lines = read_lines(shakespeare_data / "tinyshakespeare" / "input.txt")
    assert data.lines("val")[:3] == lines[36_000:36_003]  # the last 10% of 40,000 lines
    batch = next(iter(data.train_dataloader()))
    check_batch(batch, 48, data.spec.vocab_size)
    assert batch["token_type_ids"].shape == batch["input_ids"].shape


def test_bad_settings_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"data\.corpus='c4'.*\['wikitext2', 'shakespeare', 'sst2', 'toy'\]"
    ):
        MaskedLMDataModule("c4", tmp_path)
    with pytest.raises(ValueError, match=r"data\.data_dir=None, but data\.corpus='wikitext2'"):
        MaskedLMDataModule("wikitext2")
    with pytest.raises(ValueError, match=r"data\.max_len=4 must be at least 5 \(nsp=True\)"):
        MaskedLMDataModule("toy", max_len=4, nsp=True)
    with pytest.raises(ValueError, match=r"data\.mlm_probability=0"):
        MaskedLMDataModule("toy", mlm_probability=0)
    with pytest.raises(ValueError, match=r"data\.max_lines=0 must be at least 1"):
        MaskedLMDataModule("toy", max_lines=0)


def test_missing_files_are_named_when_offline(tmp_path: Path) -> None:
    data = MaskedLMDataModule("shakespeare", tmp_path / "empty", tmp_path, download=False)
    with pytest.raises(MissingDataError, match=r"input\.txt is missing"):
        data.spec  # noqa: B018


def test_given_tokenizer_is_used_as_it_is(toy: MaskedLMDataModule, tmp_path: Path) -> None:
    toy.tokenizer.save(tmp_path / "tokenizer.json")
    data = make(tmp_path / "cache", tokenizer_path=tmp_path / "tokenizer.json", toy_train_lines=50)
    assert data.tokenizer.fingerprint == toy.tokenizer.fingerprint
    assert data.spec.vocab_size == toy.spec.vocab_size
    assert not list((tmp_path / "cache").rglob("*.tokenizer.json"))  # nothing trained


def test_training_loader_resumes_mid_epoch_with_the_same_masks(toy: MaskedLMDataModule) -> None:
    assert_resumes_mid_epoch(toy.train_dataloader)
