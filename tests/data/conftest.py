"""Fixtures for the data tests: the shared real datasets and a local HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader

from tests.conftest import DATA_DIR, require_data


def shared_data_dir() -> Path:
    """$ATTNLAB_DATA_DIR (CI: ../shared/data), else shared/data beside the checkout."""
    return DATA_DIR


def require(*relative: str) -> Path:
    """The shared data directory when these files (relative to it; a .gz variant counts) are
    there; else skip naming the missing file, or fail under ATTNLAB_REQUIRE_DATA=1
    (tests/conftest.py's require_data)."""
    return require_data(files=relative)


def assert_resumes_mid_epoch(
    make_loader: Callable[[], DataLoader], epoch: int = 1, seen: int = 3, compare: int = 4
) -> None:
    """A fresh training loader given the state_dict of one that handed out `seen` batches of
    `epoch` serves the next `compare` batches identically, in the order Lightning drives a
    resumed fit: iter(), load_state_dict, set_epoch, then the global RNG put back (ResumeState;
    masking collates draw from it) before the first batch."""
    first = make_loader()
    _set_sampler_epoch(first, epoch)
    iterator = iter(first)
    for _ in range(seen):
        next(iterator)
    state = first.state_dict()
    assert state == {"epoch": epoch, "batches": seen}
    rng = torch.get_rng_state()
    expected = [next(iterator) for _ in range(compare)]

    resumed = make_loader()
    iterator = iter(resumed)
    resumed.load_state_dict(state)
    _set_sampler_epoch(resumed, epoch)
    torch.set_rng_state(rng)
    got = [next(iterator) for _ in range(compare)]
    assert resumed.state_dict() == {"epoch": epoch, "batches": seen + compare}
    for want, have in zip(expected, got, strict=True):
        assert want.keys() == have.keys()
        for key in want:
            assert torch.equal(want[key], have[key]), key
    # The position matters: the epoch's first batches are other ones.
    fresh = make_loader()
    _set_sampler_epoch(fresh, epoch)
    key = next(iter(got[0]))
    assert not torch.equal(next(iter(fresh))[key], got[0][key])


@pytest.fixture
def shakespeare_data() -> Path:
    return require_data("shakespeare")


@pytest.fixture(scope="module")
def wikitext_data() -> Path:
    return require_data("wikitext2")


@pytest.fixture(scope="module")
def sst2_data() -> Path:
    return require_data("sst2")


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
