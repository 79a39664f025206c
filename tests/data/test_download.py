"""ensure_file: local files (plain or .gz) first, else a checked, atomic download."""

from __future__ import annotations

import gzip
import hashlib
import socket
from pathlib import Path

import pytest

from attnlab.data.loading.download import ChecksumError, MissingDataError, ensure_file, read_text

CONTENT = b"To be, or not to be, that is the question.\n" * 100
SHA = hashlib.sha256(CONTENT).hexdigest()


def test_local_file_is_used_without_url(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(CONTENT)
    assert ensure_file(path) == path


def test_gzipped_variant_is_used_and_read_decompressed(tmp_path: Path) -> None:
    (tmp_path / "train.txt.gz").write_bytes(gzip.compress(CONTENT))
    found = ensure_file(tmp_path / "train.txt", url=None, sha256=SHA)
    assert found == tmp_path / "train.txt.gz"
    assert read_text(found) == CONTENT.decode()


def test_missing_file_is_downloaded_and_checked(http_server, tmp_path: Path) -> None:
    base, served = http_server
    (served / "input.txt").write_bytes(CONTENT)
    target = tmp_path / "data" / "input.txt"
    assert ensure_file(target, f"{base}/input.txt", SHA) == target
    assert target.read_bytes() == CONTENT
    assert sorted(p.name for p in target.parent.iterdir()) == ["input.txt"]  # no temp files
    # Present now: used again without asking the server (this URL would fail).
    assert ensure_file(target, f"{base}/gone.txt", SHA) == target


def test_gzip_download_is_stored_decompressed(http_server, tmp_path: Path) -> None:
    base, served = http_server
    (served / "train.txt.gz").write_bytes(gzip.compress(CONTENT))
    target = tmp_path / "train.txt"
    ensure_file(target, f"{base}/train.txt.gz", SHA, decompress=True)
    assert target.read_bytes() == CONTENT  # sha256 is of the uncompressed content


def test_wrong_sha256_is_an_error_and_leaves_nothing(http_server, tmp_path: Path) -> None:
    base, served = http_server
    (served / "input.txt").write_bytes(CONTENT)
    data_dir = tmp_path / "data"
    with pytest.raises(ChecksumError, match=rf"input\.txt has sha256 {SHA}, expected 0{{64}}"):
        ensure_file(data_dir / "input.txt", f"{base}/input.txt", "0" * 64)
    assert list(data_dir.iterdir()) == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_url_names_file_directory_and_source(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/input.txt"
    with pytest.raises(MissingDataError) as error:
        ensure_file(tmp_path / "shakespeare" / "input.txt", url, SHA, timeout=5)
    message = str(error.value)
    assert "input.txt is missing" in message
    assert f"downloading {url} failed" in message
    assert f"into {tmp_path / 'shakespeare'}/" in message
    assert SHA in message
    assert not (tmp_path / "shakespeare").exists() or not any((tmp_path / "shakespeare").iterdir())


def test_http_error_is_a_missing_data_error(http_server, tmp_path: Path) -> None:
    base, _ = http_server
    with pytest.raises(MissingDataError, match=r"downloading .*/nope\.txt failed: HTTP Error 404"):
        ensure_file(tmp_path / "nope.txt", f"{base}/nope.txt", SHA)
    assert not (tmp_path / "nope.txt").exists()


def test_no_url_says_where_to_get_the_file(tmp_path: Path) -> None:
    source = "https://example.org/input.txt"
    with pytest.raises(MissingDataError) as error:
        ensure_file(tmp_path / "input.txt", None, SHA, source=source)
    message = str(error.value)
    assert "no URL to fetch" in message
    assert f"Put input.txt from {source}" in message
    assert f"into {tmp_path}/" in message
    assert "input.txt.gz" in message  # gzipped copies are accepted too


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("input.txt", CONTENT[:-7]),  # truncated
        ("input.txt", CONTENT.replace(b"question", b"QUESTION")),  # altered, same size
        ("input.txt.gz", gzip.compress(CONTENT)[:-20]),  # a cut-off download
    ],
    ids=["truncated", "altered", "truncated-gz"],
)
def test_damaged_file_on_disk_is_reported_and_left_alone(
    tmp_path: Path, name: str, stored: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(stored)
    with pytest.raises(ChecksumError, match=r"input\.txt.*damaged.*expected " + SHA):
        ensure_file(tmp_path / "input.txt", url="http://127.0.0.1:9/never", sha256=SHA)
    assert path.read_bytes() == stored  # nothing replaced, nothing downloaded
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
