"""Starting again on cached data reads neither the corpus nor the token arrays."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

from attnlab.data import ShakespeareCharDataModule
from attnlab.data.loading import download
from attnlab.data.loading.download import file_sha256
from attnlab.data.loading.packing import encode_stream
from attnlab.data.sources import shakespeare


@pytest.fixture
def counted_hashes(monkeypatch) -> list[int]:
    """How many bytes file_sha256 hashed in full, call by call."""
    calls: list[int] = []
    real = download._stream_sha256

    def counting(stream):
        digest = real(stream)
        calls.append(stream.tell())
        return digest

    monkeypatch.setattr(download, "_stream_sha256", counting)
    return calls


def test_file_sha256_is_memoised_until_the_file_changes(
    tmp_path: Path, counted_hashes, monkeypatch
) -> None:
    path = tmp_path / "corpus.txt"
    path.write_bytes(os.urandom(10_000))
    import hashlib

    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert counted_hashes == [10_000]  # the second call trusted the memo
    data = bytearray(path.read_bytes())
    data[random.randrange(len(data))] ^= 1  # same size, altered in place
    with open(path, "r+b") as file:
        file.write(data)
    assert file_sha256(path) == hashlib.sha256(bytes(data)).hexdigest()
    assert len(counted_hashes) == 2
    monkeypatch.setenv("ATTNLAB_VERIFY_DATA", "1")
    file_sha256(path)
    assert len(counted_hashes) == 3  # a full check on demand


def test_shakespeare_second_start_reads_nothing_big(
    shakespeare_data: Path, tmp_path: Path, counted_hashes, monkeypatch
) -> None:
    first = ShakespeareCharDataModule(shakespeare_data, cache_dir=tmp_path).corpus
    counted_hashes.clear()

    def no_reading(path):
        raise AssertionError(f"read the whole text of {path}")

    monkeypatch.setattr(shakespeare, "read_text", no_reading)
    again = ShakespeareCharDataModule(shakespeare_data, cache_dir=tmp_path).corpus
    assert counted_hashes == []  # no file hashed in full: the source, the cache entry
    assert again.vocab_size == first.vocab_size == 65
    np.testing.assert_array_equal(again.splits["train"], first.splits["train"])


def test_chunked_encoding_equals_one_batch() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["a", "b", "c", "dd"]
    tokenizer = Tokenizer(
        models.WordLevel({w: i for i, w in enumerate(words)} | {"<unk>": 4}, unk_token="<unk>")
    )
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    rng = random.Random()
    lines = [
        " ".join(rng.choice([*words, "zz"]) for _ in range(rng.randint(0, 6))) for _ in range(300)
    ]
    whole = encode_stream(tokenizer, lines, sep_id=9, chunk=10_000)
    assert np.array_equal(encode_stream(tokenizer, lines, sep_id=9, chunk=7), whole)
    assert (whole == 9).sum() == 300 and encode_stream(tokenizer, [], 9).shape == (0,)
