"""`<folder>/.lock`: one writer per run folder (or sweep folder) at a time (flock, via
`filelock`). The file names its holder (pid, host) while held and is removed on release, so a
finished run leaves none; a file found with a name in it when the lock is free is a holder that
died: its lock is taken over with a warning."""

from __future__ import annotations

import logging
import os
import socket
from contextlib import suppress
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


def holder_name() -> str:
    return f"pid {os.getpid()} on host {socket.gethostname()}"


def held_here(folder: Path) -> bool:
    """Whether this process holds `folder`'s lock (the lock file names its holder)."""
    path = folder / LOCK_FILE
    return path.is_file() and path.read_text().strip() == holder_name()


def acquire(folder: Path) -> tuple[FileLock | None, str]:
    """`<folder>/.lock`, held (with this process named in it), or (None, its holder's name)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    for _ in range(3):  # the holder may remove the file between our open and our lock
        before = path.read_text().strip() if path.is_file() else ""
        lock = FileLock(str(path), timeout=1)  # two starts at one moment: the second waits
        try:
            lock.acquire()
        except Timeout:
            holder = before or (path.read_text().strip() if path.is_file() else "")
            return None, holder or "another process"
        if path.is_file():
            break
        lock.release()  # we locked a file its holder had removed: lock the new one
    if before:
        log.warning("%s: taking over the lock of %s, which is no longer running", folder, before)
    path.write_text(holder_name() + "\n")
    return lock, ""


def release(folder: Path, lock: FileLock | None) -> None:
    """Remove the lock file, then unlock: a process waiting on it locks a removed file, sees
    that, and locks the path anew (`acquire`)."""
    if lock is None:
        return
    try:
        with suppress(FileNotFoundError):
            (folder / LOCK_FILE).unlink()
    finally:
        lock.release()
