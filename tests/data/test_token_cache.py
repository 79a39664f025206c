"""TokenCache: built once, reused, rebuilt when its source changes or the file is damaged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from attnlab.data.loading.token_cache import TokenCache, source_key, token_dtype


class CountingBuild:
    """A build function that records how often it ran."""

    def __init__(self, make: Callable[[], np.ndarray]) -> None:
        self.make = make
        self.calls = 0

    def __call__(self) -> np.ndarray:
        self.calls += 1
        return self.make()


def tokens_of(source: Path) -> np.ndarray:
    return np.frombuffer(source.read_bytes(), dtype=np.uint8).astype(np.int64)


def cached_array(cache: TokenCache, source: Path, build: CountingBuild) -> np.ndarray:
    return cache.tokens("corpus/train", {"source": source_key(source)}, build, vocab_size=256)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "train.txt"
    path.write_text("the quick brown fox\n" * 50)
    return path


def test_built_once_then_reused_memory_mapped(tmp_path: Path, source: Path) -> None:
    cache, build = TokenCache(tmp_path / "cache"), CountingBuild(lambda: tokens_of(source))
    first = cached_array(cache, source, build)
    (npy,) = (tmp_path / "cache" / "corpus").glob("train.*.npy")
    mtime = npy.stat().st_mtime_ns
    again = cached_array(TokenCache(tmp_path / "cache"), source, build)
    assert build.calls == 1
    assert npy.stat().st_mtime_ns == mtime
    assert isinstance(again, np.memmap) and again.dtype == np.uint16
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(again, tokens_of(source))
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_rebuilt_when_the_source_changes(tmp_path: Path, source: Path) -> None:
    cache, build = TokenCache(tmp_path / "cache"), CountingBuild(lambda: tokens_of(source))
    cached_array(cache, source, build)
    source.write_text("a different text\n")
    changed = cached_array(cache, source, build)
    assert build.calls == 2
    np.testing.assert_array_equal(changed, tokens_of(source))


def test_rebuilt_when_the_tokenizer_changes(tmp_path: Path, source: Path) -> None:
    cache, build = TokenCache(tmp_path / "cache"), CountingBuild(lambda: tokens_of(source))
    for vocab in ("v1", "v2", "v1"):
        cache.tokens("corpus/train", {"tokenizer": vocab}, build, vocab_size=256)
    assert build.calls == 2  # v1's entry is kept beside v2's: switching back costs nothing


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda npy, meta: npy.write_bytes(npy.read_bytes()[:200]), id="truncated"),
        pytest.param(lambda npy, meta: npy.write_bytes(b"garbage"), id="garbled"),
        pytest.param(lambda npy, meta: npy.unlink(), id="array-missing"),
        pytest.param(lambda npy, meta: meta.write_text("{not json"), id="metadata-garbled"),
        pytest.param(lambda npy, meta: meta.unlink(), id="metadata-missing"),
        # Loads fine, same shape and dtype, different tokens: only the checksum sees it.
        pytest.param(lambda npy, meta: flip_last_byte(npy), id="altered-same-size"),
    ],
)
def test_damaged_cache_is_detected_and_rebuilt(tmp_path: Path, source: Path, damage) -> None:
    cache, build = TokenCache(tmp_path / "cache"), CountingBuild(lambda: tokens_of(source))
    cached_array(cache, source, build)
    (npy,) = (tmp_path / "cache" / "corpus").glob("train.*.npy")
    (meta,) = (tmp_path / "cache" / "corpus").glob("train.*.meta.json")
    damage(npy, meta)
    rebuilt = cached_array(cache, source, build)
    assert build.calls == 2
    np.testing.assert_array_equal(rebuilt, tokens_of(source))


def test_dtype_follows_vocabulary_size() -> None:
    assert token_dtype(65) == np.uint16
    assert token_dtype(65_536) == np.uint16
    assert token_dtype(65_537) == np.int32


def test_large_vocabulary_is_stored_as_int32(tmp_path: Path) -> None:
    ids = np.array([0, 70_000, 99_999])
    stored = TokenCache(tmp_path).tokens("big", {}, lambda: ids, vocab_size=100_000)
    assert stored.dtype == np.int32
    np.testing.assert_array_equal(stored, ids)


def test_ids_outside_the_vocabulary_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"ids span \[0, 300\], outside a vocabulary of 256"):
        TokenCache(tmp_path).tokens("bad", {}, lambda: np.array([0, 300]), vocab_size=256)
    assert not list(tmp_path.rglob("*.npy"))


def test_altered_tokenizer_cache_is_rebuilt(tmp_path: Path) -> None:
    """A tokenizer JSON that still loads but was edited (or cut at a valid point) is caught by
    the sha256 recorded at write time, and trained again."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    def train() -> Tokenizer:
        tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordLevelTrainer(special_tokens=["[UNK]"])
        tokenizer.train_from_iterator(["the quick brown fox", "the lazy dog"], trainer)
        return tokenizer

    cache, calls = TokenCache(tmp_path / "cache"), []
    build = lambda: calls.append(1) or train()  # noqa: E731
    first = cache.tokenizer("words", {"v": 1}, build)
    path = cache.tokenizer_path("words", {"v": 1})
    cache.tokenizer("words", {"v": 1}, build)
    assert len(calls) == 1  # reused
    edited = Tokenizer.from_file(str(path))
    edited.add_tokens(["intruder"])  # still a valid tokenizer file
    edited.save(str(path))
    again = cache.tokenizer("words", {"v": 1}, build)
    assert len(calls) == 2
    assert again.get_vocab() == first.get_vocab()
