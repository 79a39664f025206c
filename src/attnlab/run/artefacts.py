"""The files a run leaves behind: metrics.json, failure.json and tokenizer copies.

All are written atomically (data/atomic.py): a crash never leaves half a file, and readers
(attnlab-compare, a requeued job, another DDP rank) see the old file or the whole new one.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from attnlab.data.loading.atomic import atomic_path
from attnlab.utils.rank_zero import rank_zero_only

log = logging.getLogger(__name__)


class ArtefactWriteError(OSError):
    """A file a run writes (checkpoint, metrics.json, ...) could not be written: disk full, a
    read-only or virtual file system, a file where a directory should be. One line, naming
    the path."""

    def __str__(self) -> str:
        return self.args[0]


def _reason(path: Path, error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno is not None:
        return error.strerror or errno.errorcode.get(error.errno, str(error.errno))
    # torch.save reports a full disk as "RuntimeError: [enforce fail at inline_container.cc]"
    try:
        if shutil.disk_usage(next(p for p in (path, *path.parents) if p.exists())).free == 0:
            return "No space left on device"
    except (OSError, StopIteration):
        pass
    return " ".join(str(error).split())[:200] or type(error).__name__


def _is_write_failure(text: str) -> bool:
    return "enforce fail" in text or "write" in text.lower()


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Around a write of `path`: an OSError (or torch's RuntimeError for a failed write)
    becomes one ArtefactWriteError line naming the path and the reason."""
    path = Path(path)
    try:
        yield
    except ArtefactWriteError:
        raise
    except (OSError, RuntimeError) as error:
        text = str(error)
        if isinstance(error, RuntimeError) and not _is_write_failure(text):
            raise
        raise ArtefactWriteError(f"cannot write {path}: {_reason(path, error)}") from error


def write_json(path: Path, content: dict[str, Any]) -> None:
    with writing(path), atomic_path(path) as tmp:
        tmp.write_text(json.dumps(content, indent=2) + "\n")


@rank_zero_only
def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """metrics.json of a finished run (or evaluation), written by rank 0 only."""
    write_json(path, metrics)


@rank_zero_only
def write_failure(run_dir: Path, error: BaseException) -> None:
    """failure.json beside the logs, so attnlab-compare can show the run as failed; nothing
    the run wrote before (metrics.json of an earlier attempt, checkpoints) is touched, and an
    earlier attempt's failure stays in the file, under `earlier` (oldest first)."""
    report: dict[str, Any] = {
        "status": "failed",
        "error": f"{type(error).__name__}: {error}",
        "traceback": traceback.format_exception(error),
    }
    path = run_dir / "failure.json"
    try:
        text = path.read_text(errors="replace") if path.is_file() else None
    except OSError:
        text = None
    previous: Any = None
    if text is not None:
        try:
            previous = json.loads(text)
        except ValueError:  # not JSON (cut off, edited): its text is kept in the new report
            previous = {"unreadable": text}
    if isinstance(previous, dict):
        earlier = previous.pop("earlier", [])
        report["earlier"] = [*earlier, previous]
    try:
        write_json(run_dir / "failure.json", report)
    except ArtefactWriteError as write_error:  # a full disk must not hide the run's own error
        log.warning("%s", write_error)


def write_tokenizer_file(tokenizer: dict[str, str], cache_dir: str | None) -> str:
    """The tokenizer a checkpoint carries (`{"fingerprint", "json"}`) as a file in the cache;
    returns its path. Named by content: an existing file is the same tokenizer."""
    name = f"{tokenizer['fingerprint']}.json"
    from attnlab.data.loading.token_cache import default_cache_dir  # numpy, tokenizers

    path = Path(cache_dir or default_cache_dir()) / "pretrained_tokenizers" / name
    if not path.is_file():
        with writing(path), atomic_path(path) as tmp:
            tmp.write_text(tokenizer["json"])
    return str(path)
