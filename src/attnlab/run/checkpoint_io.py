"""Checkpoint files that are either complete or absent, never half-written, and that carry a
checksum of their own payload, checked whenever they are read.

The checksum (`attnlab_checksum`, a sha256) lives inside the checkpoint dict, so it travels in
the same file and the same atomic rename as the payload: there is no second file that a kill
between two writes could leave stale or missing. It covers every tensor's bytes, dtype and
shape and every plain value (numbers, strings, dict keys, list lengths) of the checkpoint, in
the order torch.save stores them; objects of other types count by their type name (their
contents are not plain data). Damage to the pickled part makes the file unreadable, damage to
the tensor data changes their bytes: either way the file is refused, by name.

Checkpoints written before attnlab had checksums have no `attnlab_checksum`: they load as
before, unverified (a debug log line says so). Checkpoints are read with
`torch.load(weights_only=True)`: their contents are tensors and plain values (no pickled
classes); an older or foreign file that needs more is read in full, with a warning (`_load`).

`link_checkpoint` makes a second name for a checkpoint already written (last.ckpt for the
best.ckpt of the same step) with a hard link renamed into place: no second write, and the
same all-or-nothing guarantee. `AsyncAtomicCheckpointIO` does all of it in a background thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.plugins.io import AsyncCheckpointIO

from attnlab.data.loading.atomic import atomic_path
from attnlab.run.artefacts import writing

log = logging.getLogger(__name__)

CHECKSUM_KEY = "attnlab_checksum"
_PLAIN = (bool, int, float, complex, str, bytes, type(None))


class DamagedCheckpointError(ValueError):
    """A checkpoint file that cannot be read, or whose payload no longer matches its checksum.
    The message is one line and starts with the file's path."""


def payload_checksum(checkpoint: dict[str, Any]) -> str:
    """sha256 over the checkpoint's contents (without its own checksum entry)."""
    digest = hashlib.sha256()
    _hash(digest, {k: v for k, v in checkpoint.items() if k != CHECKSUM_KEY})
    return digest.hexdigest()


def _hash(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        try:
            flat = tensor.cpu().contiguous().reshape(-1).view(torch.uint8)
        except (RuntimeError, TypeError, NotImplementedError):  # sparse, quantized, meta
            return
        digest.update(memoryview(flat.numpy()))  # the tensor's own bytes, not a copy
    elif isinstance(value, np.ndarray):
        digest.update(f"A{value.dtype}{value.shape}".encode())
        if value.dtype != object:
            digest.update(np.ascontiguousarray(value).tobytes())
        else:
            for item in value.reshape(-1):
                _hash(digest, item)
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key, item in value.items():
            _hash(digest, key)
            _hash(digest, item)
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _hash(digest, item)
    elif isinstance(value, _PLAIN):
        digest.update(f"P{type(value).__name__}:{value!r};".encode())
    else:  # sets, configs, user objects: their repr may hold addresses or unordered items
        digest.update(f"O{type(value).__module__}.{type(value).__qualname__};".encode())


def with_checksum(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy of `checkpoint` with its checksum added (the caller's dict is untouched)."""
    return {**checkpoint, CHECKSUM_KEY: payload_checksum(checkpoint)}


def verify_checksum(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Raise DamagedCheckpointError if `checkpoint` (read from `path`) does not match the
    checksum it carries; a checkpoint without one (older attnlab) passes unverified."""
    stored = checkpoint.get(CHECKSUM_KEY) if isinstance(checkpoint, dict) else None
    if stored is None:
        log.debug("%s has no checksum (written before attnlab had them): not verified", path)
        return
    if payload_checksum(checkpoint) != stored:
        raise DamagedCheckpointError(
            f"{path} is damaged: its contents no longer match the checksum stored in it"
        )


# One verified checkpoint held for its next reader (`keep=True`): a resume reads and verifies
# its checkpoint before any work, then Lightning reads it again in `fit`. Keyed by the file's
# identity, so a file replaced in between is read afresh.
_kept: tuple[tuple[str, int, int, int], dict[str, Any]] | None = None


def _identity(path: str | Path) -> tuple[str, int, int, int]:
    status = os.stat(path)  # an atomic rename gives the new file a new inode
    return str(Path(path).resolve()), status.st_ino, status.st_mtime_ns, status.st_size


def read_checkpoint(
    path: str | Path, map_location: Any = "cpu", keep: bool = False
) -> dict[str, Any]:
    """torch.load + verify_checksum; any failure is one DamagedCheckpointError naming `path`.

    `keep`: hold the verified contents (on CPU) for the next read of the same, unchanged file,
    which takes them without reading or hashing again (a read without `keep` releases them).
    A resume reads its checkpoint once instead of three times. The readers share that dict:
    none may change it but the last (Lightning's fit)."""
    global _kept
    if _kept is not None and _kept[0] == _identity(path):
        checkpoint = _kept[1]
        if not keep:
            _kept = None
        return checkpoint
    checkpoint = _read_verified(path, map_location)
    if keep:
        _kept = (_identity(path), checkpoint)
    return checkpoint


def release_kept_checkpoint() -> None:
    """Drop a checkpoint held by `read_checkpoint(keep=True)` that nobody read (a run that
    failed before `fit`): the next job of a multirun must not carry it."""
    global _kept
    _kept = None


def _load(path: str | Path, map_location: Any) -> Any:
    """torch.load without running pickled code (weights_only=True): attnlab's checkpoints hold
    tensors and plain values only (docs/reliability.md). A file that holds other objects (one
    written by an older attnlab or by other code) is read with full unpickling, with a warning
    that names the first object torch refused."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only load failed" not in str(error).lower():
            raise
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
        log.warning(
            "%s holds %s, which torch.load(weights_only=True) refuses: read with full "
            "unpickling, which runs code from the file (trust it first); checkpoints written "
            "by this attnlab need none",
            path,
            found.group(1) if found else "objects other than tensors and plain values",
        )
        return checkpoint


def _read_verified(path: str | Path, map_location: Any) -> dict[str, Any]:
    try:
        checkpoint = _load(path, map_location)
    except FileNotFoundError:
        raise
    except Exception as error:  # truncated, overwritten, or not a checkpoint at all
        reason = " ".join(str(error).split()).split(". ")[0][:160] or type(error).__name__
        raise DamagedCheckpointError(
            f"{path} is not a readable checkpoint: damaged, truncated or not a checkpoint "
            f"({type(error).__name__}: {reason})"
        ) from None
    if not isinstance(checkpoint, dict):
        raise DamagedCheckpointError(f"{path} is not a checkpoint (it holds a {type(checkpoint)})")
    verify_checksum(checkpoint, path)
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a temporary file beside the target, fsyncs it and renames it over the target;
    adds the payload's checksum on save and checks it on load.

    Lightning's own save goes through an fsspec transaction that stages the file in the system
    temp directory and `shutil.move`s it: a copy, not an atomic rename, whenever /tmp is another
    filesystem (the usual case on clusters), so a kill mid-save could leave a truncated
    last.ckpt. Remote URLs keep Lightning's behaviour (and get no checksum).
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path) or storage_options is not None:
            return super().save_checkpoint(checkpoint, path, storage_options)
        content = with_checksum(checkpoint)
        with writing(path), atomic_path(Path(path)) as tmp, open(tmp, "wb") as file:
            torch.save(content, file)
            file.flush()
            os.fsync(file.fileno())

    def link_checkpoint(self, source: str | Path, target: str | Path) -> None:
        link_checkpoint(source, target)

    def load_checkpoint(
        self,
        path: str | Path,
        map_location: Any = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if "://" in str(path):
            return super().load_checkpoint(path, map_location, weights_only)
        if not Path(path).is_file():
            raise FileNotFoundError(f"Checkpoint file not found: {path}")
        return read_checkpoint(path, map_location)


def link_checkpoint(source: str | Path, target: str | Path) -> None:
    """Give the file at `source` a second name, `target`, without writing it again: a hard link
    made beside `target` and renamed over it, so `target` is at every moment its old file or
    `source`'s, whole. Replacing `source` later (an atomic save renames a new file over it)
    leaves `target` as it was. A filesystem without hard links gets a copy, renamed the same way.
    """
    with writing(target), atomic_path(Path(target)) as tmp:
        try:
            os.link(source, tmp)
        except OSError:  # no hard links here (some network and FAT filesystems)
            shutil.copyfile(source, tmp)


class AsyncAtomicCheckpointIO(AsyncCheckpointIO):
    """AtomicCheckpointIO in a background thread (Lightning's AsyncCheckpointIO): a save costs
    the training loop a copy of the tensors, on their device; the checksum, the write, the fsync
    and the rename happen in the thread. Saves, links and removals run in order there; reading
    a checkpoint first waits for them, and so does the end of every fit, test or failure
    (Lightning's teardown). A kill mid-save leaves the previous file, as a synchronous save.
    """

    def __init__(self) -> None:
        super().__init__(AtomicCheckpointIO())

    def _submit(self, action: Any, *args: Any) -> Any:
        self._ensure_setup()

        def run() -> None:
            try:
                action(*args)
            except BaseException as error:  # raised in the training thread, as saves' are
                self._error = error

        assert self._executor is not None
        future = self._executor.submit(run)
        if self._error:
            raise self._error
        return future

    def wait(self) -> None:
        """Return once every save, link and removal asked for so far is done."""
        if self._executor is not None:
            self._submit(lambda: None).result()
        if self._error:
            raise self._error

    def link_checkpoint(self, source: str | Path, target: str | Path) -> None:
        self._submit(link_checkpoint, source, target)

    def remove_checkpoint(self, path: str | Path) -> None:
        assert self.checkpoint_io is not None
        self._submit(self.checkpoint_io.remove_checkpoint, path)

    def load_checkpoint(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.wait()
        return super().load_checkpoint(*args, **kwargs)
