"""ensure_file: local files (plain or .gz) first, else a checked, atomic download."""

from __future__ import annotations

import gzip
import hashlib
import socket
import zipfile
from pathlib import Path

import pytest

from attnlab.data import catalog
from attnlab.data.loading.download import ChecksumError, MissingDataError, ensure_file, read_text
from attnlab.run import datasets as data_cli
from tests.conftest import DATA_DIR

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


def _zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_zip_member_is_extracted_and_checked(http_server, tmp_path: Path) -> None:
    """SST-2 comes as GLUE's SST-2.zip: the file is a member, checked after extraction."""
    base, served = http_server
    _zip(served / "SST-2.zip", {"SST-2/train.tsv": CONTENT, "SST-2/dev.tsv": b"other\n"})
    target = tmp_path / "sst2" / "train.tsv"
    url = f"{base}/SST-2.zip"
    assert ensure_file(target, url, SHA, member="SST-2/train.tsv") == target
    assert target.read_bytes() == CONTENT
    assert sorted(p.name for p in target.parent.iterdir()) == ["train.tsv"]  # no zip left
    with pytest.raises(ChecksumError, match=r"expected 0{64}"):
        ensure_file(tmp_path / "sst2" / "dev.tsv", url, "0" * 64, member="SST-2/dev.tsv")
    with pytest.raises(MissingDataError, match=r"not a zip archive with member SST-2/nope\.tsv"):
        ensure_file(tmp_path / "sst2" / "nope.tsv", url, SHA, member="SST-2/nope.tsv")
    assert sorted(p.name for p in target.parent.iterdir()) == ["train.tsv"]


def _local_catalog(base: str, served: Path) -> dict[str, tuple[catalog.DataFile, ...]]:
    """Every kind of catalog entry (plain, .gz kept, zip member), served from 127.0.0.1."""
    (served / "input.txt").write_bytes(CONTENT)
    (served / "train.de.gz").write_bytes(gzip.compress(CONTENT))
    _zip(served / "SST-2.zip", {"SST-2/train.tsv": CONTENT, "SST-2/dev.tsv": CONTENT[:50]})
    gz_sha = hashlib.sha256((served / "train.de.gz").read_bytes()).hexdigest()
    return {
        "shakespeare": (catalog.DataFile("tinyshakespeare/input.txt", f"{base}/input.txt", SHA),),
        "multi30k": (catalog.DataFile("multi30k/train.de.gz", f"{base}/train.de.gz", gz_sha),),
        "sst2": tuple(
            catalog.DataFile(f"sst2/{name}", f"{base}/SST-2.zip", sha, member=f"SST-2/{name}")
            for name, sha in [
                ("train.tsv", SHA),
                ("dev.tsv", hashlib.sha256(CONTENT[:50]).hexdigest()),
            ]
        ),
    }


def test_attnlab_data_download_fetches_every_dataset(
    http_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    base, served = http_server
    local = _local_catalog(base, served)
    monkeypatch.setattr(catalog, "DATASETS", local)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(data_dir))
    assert catalog.missing(local, data_dir) == [data_dir / f.path for f in catalog.files_of(local)]
    assert data_cli.main(["download"]) == 0
    assert catalog.missing(local, data_dir) == []
    assert (data_dir / "sst2" / "train.tsv").read_bytes() == CONTENT
    assert gzip.decompress((data_dir / "multi30k" / "train.de.gz").read_bytes()) == CONTENT
    # Present now: checked, not fetched again (the server is gone for these).
    for path in served.iterdir():
        path.unlink()
    assert data_cli.main(["download", "sst2"]) == 0
    assert data_cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "missing" not in out and f"present {data_dir / 'sst2' / 'dev.tsv'}" in out


def test_attnlab_data_download_names_the_failure(
    http_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    base, served = http_server
    local = _local_catalog(base, served)
    (served / "input.txt").write_bytes(b"changed upstream\n")
    monkeypatch.setattr(catalog, "DATASETS", local)
    data_dir = tmp_path / "data"
    assert data_cli.main(["--data-dir", str(data_dir), "download", "shakespeare"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("attnlab-data: shakespeare: ") and f"expected {SHA}" in err
    assert not (data_dir / "tinyshakespeare" / "input.txt").exists()
    with pytest.raises(SystemExit):
        data_cli.main(["--data-dir", str(data_dir), "download", "imagenet"])
    assert "unknown dataset(s) ['imagenet']" in capsys.readouterr().err


def test_catalog_covers_every_dataset_with_a_url_and_sha256() -> None:
    assert set(catalog.DATASETS) == {"shakespeare", "wikitext2", "sst2", "multi30k"}
    for file in catalog.files_of(catalog.DATASETS):
        assert file.url.startswith("https://") and len(file.sha256) == 64, file
    sst2_files = catalog.DATASETS["sst2"]
    assert {f.url for f in sst2_files} == {"https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"}
    assert [f.member for f in sst2_files] == ["SST-2/train.tsv", "SST-2/dev.tsv"]


@pytest.mark.needs_data("shakespeare", "wikitext2", "sst2", "multi30k")
def test_catalog_checksums_match_the_real_data() -> None:
    """What `make data` would fetch is what the tests read: every file present checks out."""
    paths = catalog.fetch(catalog.DATASETS, DATA_DIR)
    assert len(paths) == len(catalog.files_of(catalog.DATASETS))


def test_offline_refuses_to_download_but_reads_files_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ATTNLAB_OFFLINE=1 (the test suite sets it): a missing file is a MissingDataError at once,
    naming the switch, with no connection tried; files on disk are read as usual."""
    monkeypatch.setenv("ATTNLAB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("a connection was tried")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    with pytest.raises(MissingDataError, match="not downloaded: ATTNLAB_OFFLINE=1"):
        ensure_file(tmp_path / "input.txt", "https://example.org/input.txt", SHA)
    assert not (tmp_path / "input.txt").exists()
    (tmp_path / "input.txt").write_bytes(CONTENT)
    assert ensure_file(tmp_path / "input.txt", "https://example.org/input.txt", SHA)


def test_fetch_takes_an_uncompressed_copy_that_list_calls_present(tmp_path: Path) -> None:
    """Multi30k's files are fetched as .gz; an uncompressed copy counts as present, and
    download keeps it instead of fetching the .gz (offline here: a fetch would fail)."""
    for file in catalog.DATASETS["multi30k"]:
        plain = tmp_path / file.path.removesuffix(".gz")
        plain.parent.mkdir(parents=True, exist_ok=True)
        plain.write_text("ein Satz\n")
    assert catalog.missing(["multi30k"], tmp_path) == []
    fetched = catalog.fetch(["multi30k"], tmp_path)
    assert len(fetched) == len(catalog.DATASETS["multi30k"])
    assert all(p.suffix != ".gz" and p.is_file() for p in fetched)


def test_the_skip_hint_puts_the_data_where_the_tests_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hint said `make data` (into ./data) "or set ATTNLAB_DATA_DIR", while the tests read
    $ATTNLAB_DATA_DIR or ../shared/data: after `make data` they stayed skipped."""
    import tests.conftest as conftest
    from attnlab.run.datasets import default_data_dir

    clone = tmp_path / "attnlab"
    clone.mkdir()
    monkeypatch.chdir(clone)  # where `make data` runs attnlab-data
    monkeypatch.delenv("ATTNLAB_DATA_DIR", raising=False)
    assert conftest.default_data_dir({}, clone) == default_data_dir().resolve() == clone / "data"
    (tmp_path / "shared" / "data").mkdir(parents=True)  # a shared copy beside the clone
    assert conftest.default_data_dir({}, clone) == tmp_path / "shared" / "data"
    given = {"ATTNLAB_DATA_DIR": str(tmp_path / "mine")}
    assert conftest.default_data_dir(given, clone) == tmp_path / "mine"
    # the hint names the one command that fills the folder the tests read
    monkeypatch.setattr(conftest, "DATA_DIR", tmp_path / "empty")
    monkeypatch.setattr(conftest, "REQUIRE_DATA", False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        conftest.require_data("sst2")
    assert f"`ATTNLAB_DATA_DIR={tmp_path / 'empty'} make data NAMES='sst2'`" in str(skipped.value)
