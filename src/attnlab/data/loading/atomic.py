"""Write files so that readers see either the old file or the complete new one, never a part."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds.

    The temporary file is in the same directory so that the final `os.replace` is a rename on one
    file system (atomic on POSIX). On any error, including Ctrl-C, it is removed. Its name is
    unique per process, so ranks of a DDP job may build the same file at once: the last complete
    copy wins.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_orphans(directory: Path) -> list[Path]:
    """The temporary files of `atomic_path` in `directory` whose process is gone (killed mid-
    write, its `finally` never ran: up to a whole checkpoint each), removed; returned."""
    removed = []
    for tmp in directory.glob(".*.*.*.tmp"):
        pid = tmp.name.rsplit(".", 3)[-3]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
