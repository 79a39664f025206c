"""Fixtures for the data tests: the shared real datasets and a local HTTP server."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """$ATTNLAB_DATA_DIR (CI: ../shared/data), else shared/data beside the checkout."""
    value = os.environ.get("ATTNLAB_DATA_DIR")
    return Path(value).resolve() if value else ROOT.parent / "shared" / "data"


def require(*relative: str) -> Path:
    """The shared data directory; skip (naming what is missing) when a file is not there.

    A file counts as there when it or its .gz variant is.
    """
    root = shared_data_dir()
    missing = [
        name
        for name in relative
        if not ((root / name).is_file() or (root / f"{name}.gz").is_file())
    ]
    if missing:
        pytest.skip(f"real data not found: {', '.join(str(root / m) for m in missing)}")
    return root


@pytest.fixture
def shakespeare_data() -> Path:
    return require("tinyshakespeare/input.txt")


@pytest.fixture(scope="module")
def wikitext_data() -> Path:
    return require(*(f"wikitext-2/{split}.txt" for split in ("train", "valid", "test")))


@pytest.fixture(scope="module")
def sst2_data() -> Path:
    return require("sst2/train.tsv", "sst2/dev.tsv")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture
def http_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """(base URL, directory it serves): a server on 127.0.0.1, stopped after the test."""
    for name in ("no_proxy", "NO_PROXY"):  # a proxy configured for CI must not catch localhost
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    served = tmp_path / "served"
    served.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
