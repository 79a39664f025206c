"""WikiText-2: word level on the real files; BPE trained on a small slice of them."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from attnlab.data import MissingDataError, WikiText2DataModule, ensure_file
from attnlab.data.loading.download import ChecksumError, read_lines
from attnlab.data.sources import wikitext

FILES = ("train", "valid", "test")


@pytest.fixture(scope="module")
def word_level(wikitext_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """The word-level module on the real files (tokenised once for this test file)."""
    return WikiText2DataModule(wikitext_data, tmp_path_factory.mktemp("cache"), tokenizer="word")


def test_word_level_counts_match_the_published_ones(word_level: WikiText2DataModule) -> None:
    splits = word_level.corpus.splits
    assert {split: len(tokens) for split, tokens in splits.items()} == {
        "train": 2_088_628,
        "val": 217_646,
        "test": 245_569,
    }
    spec = word_level.spec
    assert (spec.task, spec.vocab_size, spec.max_len) == ("causal_lm", 33_278, 64)
    assert spec.eos_id is not None and spec.pad_id is None and spec.bos_id is None
    lines = sum(int((tokens == spec.eos_id).sum()) for tokens in splits.values())
    assert lines == 36_718 + 3_760 + 4_358  # one <eos> per line


def test_word_level_decodes_the_text_back(word_level: WikiText2DataModule) -> None:
    spec = word_level.spec
    lines = read_lines(ensure_file(word_level.source.directory / "valid.txt"))[:12]
    text = "\n".join(" ".join(line.split()) for line in lines) + "\n"
    assert spec.decode(word_level.corpus.splits["val"][: len(spec.encode(text))]) == text
    assert spec.decode(spec.encode(text)) == text
    assert spec.encode("zzyzxq") == spec.encode("<unk>")  # out-of-vocabulary word


@pytest.fixture(scope="module")
def wikitext_slice(wikitext_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose wikitext-2 holds the first lines of each real file (BPE trains fast)."""
    root = tmp_path_factory.mktemp("slice")
    (root / "wikitext-2").mkdir()
    for name, count in zip(FILES, (1_000, 200, 200), strict=True):
        lines = read_lines(ensure_file(wikitext_data / "wikitext-2" / f"{name}.txt"))[:count]
        (root / "wikitext-2" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(autouse=True)
def trust_the_slice(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests on the slice take its files' checksums as the expected ones (the real files'
    would refuse them, as they should refuse any altered file)."""
    if "wikitext_slice" not in request.fixturenames:
        return
    root = request.getfixturevalue("wikitext_slice") / "wikitext-2"
    for name in FILES:
        digest = hashlib.sha256((root / f"{name}.txt").read_bytes()).hexdigest()
        monkeypatch.setitem(wikitext.SHA256, name, digest)


def bpe(data_dir: Path, cache_dir: Path, vocab_size: int) -> WikiText2DataModule:
    return WikiText2DataModule(
        data_dir, cache_dir, tokenizer="bpe", bpe_vocab_size=vocab_size, url_base=None
    )


def mtimes(cache_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in cache_dir.rglob("*") if p.is_file()}


def test_bpe_is_trained_once_and_round_trips(wikitext_slice: Path, tmp_path: Path) -> None:
    data = bpe(wikitext_slice, tmp_path, 600)
    spec = data.spec
    assert spec.vocab_size == 600 and spec.eos_id == 0
    assert max(int(tokens.max()) for tokens in data.corpus.splits.values()) < 600
    text = (wikitext_slice / "wikitext-2" / "valid.txt").read_text()
    assert spec.decode(data.corpus.splits["val"]) == text  # byte-level BPE is lossless
    assert spec.decode(spec.encode("A new café , <unk> !")) == "A new café , <unk> !"

    built = mtimes(tmp_path)
    assert len([name for name in built if name.endswith(".tokenizer.json")]) == 1
    again = bpe(wikitext_slice, tmp_path, 600)
    assert again.spec.vocab_size == 600
    assert mtimes(tmp_path) == built  # nothing retrained or re-tokenised
    for split, tokens in again.corpus.splits.items():
        np.testing.assert_array_equal(tokens, data.corpus.splits[split])


def test_bpe_is_retrained_when_its_vocabulary_size_changes(
    wikitext_slice: Path, tmp_path: Path
) -> None:
    assert bpe(wikitext_slice, tmp_path, 600).spec.vocab_size == 600
    built = mtimes(tmp_path)
    assert bpe(wikitext_slice, tmp_path, 500).spec.vocab_size == 500
    now = mtimes(tmp_path)
    assert len([name for name in now if name.endswith(".tokenizer.json")]) == 2
    assert len([name for name in now if name.endswith(".npy")]) == 6
    assert all(now[name] == mtime for name, mtime in built.items())  # 600's entries kept


def test_gzipped_and_plain_files_are_both_read(wikitext_slice: Path, tmp_path: Path) -> None:
    gz_root = tmp_path / "gz"
    (gz_root / "wikitext-2").mkdir(parents=True)
    for name in FILES:
        plain = (wikitext_slice / "wikitext-2" / f"{name}.txt").read_bytes()
        (gz_root / "wikitext-2" / f"{name}.txt.gz").write_bytes(gzip.compress(plain))
    word_plain = WikiText2DataModule(wikitext_slice, tmp_path / "a", url_base=None).corpus
    word_gz = WikiText2DataModule(gz_root, tmp_path / "b", url_base=None).corpus
    assert word_plain.vocab_size == word_gz.vocab_size
    np.testing.assert_array_equal(word_plain.splits["train"], word_gz.splits["train"])


def test_missing_split_names_file_and_directory(wikitext_slice: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial" / "wikitext-2"
    partial.mkdir(parents=True)
    (partial / "train.txt").write_bytes((wikitext_slice / "wikitext-2" / "train.txt").read_bytes())
    data = WikiText2DataModule(tmp_path / "partial", tmp_path / "cache", url_base=None)
    with pytest.raises(MissingDataError) as error:
        data.spec  # noqa: B018
    message = str(error.value)
    assert "valid.txt is missing" in message and f"into {partial}/" in message
    assert "pytorch/examples/main/word_language_model/data/wikitext-2/valid.txt" in message


def test_unknown_tokenizer_lists_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.tokenizer='char'.*\['bpe', 'word'\]"):
        WikiText2DataModule(tmp_path, tokenizer="char")


def test_a_damaged_split_is_refused_by_checksum(wikitext_data: Path, tmp_path: Path) -> None:
    """The real files' sha256: a copy missing its last line is reported, by name, untouched."""
    cut = tmp_path / "cut" / "wikitext-2"
    cut.mkdir(parents=True)
    for name in FILES:
        lines = read_lines(ensure_file(wikitext_data / "wikitext-2" / f"{name}.txt"))
        (cut / f"{name}.txt").write_text("\n".join(lines[: -1 if name == "valid" else None]) + "\n")
    before = (cut / "valid.txt").read_bytes()
    data = WikiText2DataModule(tmp_path / "cut", tmp_path / "cache", url_base=None)
    with pytest.raises(ChecksumError, match=r"valid\.txt is damaged"):
        data.spec  # noqa: B018
    assert (cut / "valid.txt").read_bytes() == before
