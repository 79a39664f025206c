"""Find a data file on disk (plain or gzipped), or download it once with its sha256 checked.

Local files are used as they are: a file you put there yourself (a trimmed copy for a test, a
patched version) is trusted, and the token cache notices when it changes. Downloads are checked
against the sha256 of their content, uncompressed, which unlike the sha256 of a .gz file does not
depend on the gzip build.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import BinaryIO

from attnlab.data.loading.atomic import atomic_path

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class MissingDataError(FileNotFoundError):
    """A data file is not on disk and could not be downloaded; `path`: the file, when known."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class UnreadableDataError(ValueError):
    """A data file that is not what its reader expects (not UTF-8 text, ...), named."""


class ChecksumError(ValueError):
    """A data file (downloaded, or found on disk) does not have the expected sha256."""


def gz_variant(path: Path) -> Path:
    """`train.txt` -> `train.txt.gz` (how shared/data stores large text files)."""
    return path.with_name(path.name + ".gz")


def open_binary(path: Path) -> BinaryIO:
    """Open a file for reading, decompressing it if its name ends in .gz."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_text(path: Path) -> str:
    """The UTF-8 text of a plain or gzipped file."""
    with open_binary(path) as file:
        data = file.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:  # Python's message names no file
        raise UnreadableDataError(
            f"{path} is not UTF-8 text (byte {data[error.start]:#04x} at offset {error.start})"
        ) from None


def read_lines(path: Path) -> list[str]:
    """Lines without their newline (the final newline does not start an empty line)."""
    text = read_text(path)
    return text.removesuffix("\n").split("\n") if text else []


# ATTNLAB_VERIFY_DATA=1: hash every file in full again instead of trusting the memo below.
VERIFY_ENV = "ATTNLAB_VERIFY_DATA"


def file_sha256(path: Path) -> str:
    """sha256 of the bytes as stored (a .gz file is not decompressed).

    Memoised on disk by the file's identity as `stat` gives it (device, inode, size, mtime and
    ctime in ns; any write changes ctime), so a start-up does not re-read a corpus or a token
    cache it has hashed before: an unchanged file costs one stat. ATTNLAB_VERIFY_DATA=1 hashes
    in full regardless (damage that left every time stamp as it was: bit rot, say).
    """
    memo = _hash_memo_path(path)
    if memo is not None and os.environ.get(VERIFY_ENV, "") in ("", "0"):
        try:
            known = memo.read_text().strip()
            if len(known) == 64:
                return known
        except OSError:
            pass
    with open(path, "rb") as file:
        digest = _stream_sha256(file)
    if memo is not None:
        try:
            with atomic_path(memo) as tmp:
                tmp.write_text(digest + "\n")
        except OSError:  # a read-only cache: hash again next time
            pass
    return digest


def _hash_memo_path(path: Path) -> Path | None:
    """Where the sha256 of this exact version of `path` is kept (None if it cannot be stat'ed)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    identity = f"{os.path.realpath(path)}|{st.st_dev}|{st.st_ino}|{st.st_size}|"
    identity += f"{st.st_mtime_ns}|{st.st_ctime_ns}"
    name = hashlib.sha256(identity.encode()).hexdigest()[:32]
    root = os.environ.get("ATTNLAB_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "attnlab"
    )
    return Path(root) / "file-sha256" / name


# ATTNLAB_OFFLINE=1: never reach the network for data (a compute node without internet fails at
# once instead of after a timeout; the test suite sets it, so tests never download). A server on
# this machine is no download from the network.
OFFLINE_ENV = "ATTNLAB_OFFLINE"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


def ensure_file(
    path: str | Path,
    url: str | None = None,
    sha256: str | None = None,
    *,
    decompress: bool = False,
    member: str | None = None,
    source: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """The path of `path` or of its .gz variant if either exists; else download `url` to `path`.

    sha256 is that of the content as used (uncompressed). `decompress=True` means the URL serves
    gzip and the file is stored decompressed; `member`: the URL serves a zip archive and the file
    is that member of it, extracted (the sha256 is the member's). `source` says where the file
    comes from when there is no URL (it defaults to the URL). Raises MissingDataError when the
    file is neither on disk nor downloadable, ChecksumError when a download has the wrong sha256;
    neither leaves a file.
    """
    path = Path(path)
    for candidate in (path, gz_variant(path)):
        if candidate.is_file():
            _check_present(candidate, sha256)
            return candidate
    if url is None:
        message = _missing_message(path, source, sha256, reason="no URL to fetch")
        raise MissingDataError(message, path)
    if offline() and urllib.parse.urlsplit(url).hostname not in LOOPBACK:
        reason = f"not downloaded: {OFFLINE_ENV}=1"
        raise MissingDataError(_missing_message(path, source or url, sha256, reason), path)
    log.info("Downloading %s to %s", url, path)
    try:
        _download(url, path, sha256, decompress, timeout, member)
    # offline, 404, read-only data dir, not a zip or no such member, ...
    except (urllib.error.URLError, OSError, zipfile.BadZipFile, KeyError) as error:
        # HTTPError reads "HTTP Error 404: ..."; a plain URLError's reason is the socket error.
        detail = error.reason if type(error) is urllib.error.URLError else error
        if isinstance(error, (zipfile.BadZipFile, KeyError)):
            detail = f"not a zip archive with member {member} ({error})"
        reason = f"downloading {url} failed: {detail}"
        message = _missing_message(path, source or url, sha256, reason)
        raise MissingDataError(message, path) from error
    return path


def _download(
    url: str,
    path: Path,
    sha256: str | None,
    decompress: bool,
    timeout: float,
    member: str | None = None,
) -> None:
    digest = hashlib.sha256()
    with atomic_path(path) as tmp:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            stream = gzip.GzipFile(fileobj=response) if decompress else response
            while chunk := stream.read(CHUNK):
                if member is None:
                    digest.update(chunk)
                out.write(chunk)
        if member is not None:  # tmp holds the whole archive: extract the member over it
            with zipfile.ZipFile(tmp) as archive:
                content = archive.read(member)
            digest.update(content)
            tmp.write_bytes(content)
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            # Raised inside atomic_path, so the temporary file is removed and `path` never made.
            raise ChecksumError(
                f"{url} has sha256 {digest.hexdigest()}, expected {sha256}; "
                f"nothing was saved to {path}. The source may have changed: fetch the file "
                "yourself and check it, or configure another URL."
            )


def _check_present(path: Path, sha256: str | None) -> None:
    """A file found on disk must be the expected one: its bytes, or (.gz) its content, hash to
    sha256. A truncated or altered file is reported, never replaced: it may be someone's."""
    if sha256 is None:
        return
    expected = sha256.lower()
    found = file_sha256(path)
    if found == expected:
        return
    if path.suffix == ".gz":
        try:
            with open_binary(path) as stream:
                found = _stream_sha256(stream)
        except (OSError, EOFError, gzip.BadGzipFile) as error:  # a truncated .gz
            found = f"unreadable ({error})"
        if found == expected:
            return
    raise ChecksumError(
        f"Data file {path} is damaged or not the expected version: sha256 {found}, expected "
        f"{expected}. Nothing was changed. Delete it to fetch it again (online), or replace it "
        "with the original."
    )


def _stream_sha256(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _missing_message(path: Path, source: str | None, sha256: str | None, reason: str) -> str:
    where = f" from {source}" if source else ""
    check = f" (sha256 {sha256} uncompressed)" if sha256 else ""
    return (
        f"Data file {path.name} is missing: looked for {path} and {gz_variant(path).name} "
        f"({reason}). Put {path.name}{where}{check} into {path.parent}/ (gzipped as "
        f"{gz_variant(path).name} is fine), or point data_dir (env ATTNLAB_DATA_DIR) at a "
        "directory that has it."
    )
