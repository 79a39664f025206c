"""Checkpoint files that are either complete or absent, never half-written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from attnlab.data.loading.atomic import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a temporary file beside the target, fsyncs it and renames it over the target.

    Lightning's own save goes through an fsspec transaction that stages the file in the system
    temp directory and `shutil.move`s it: a copy, not an atomic rename, whenever /tmp is another
    filesystem (the usual case on clusters), so a kill mid-save could leave a truncated
    last.ckpt. Remote URLs keep Lightning's behaviour.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path) or storage_options is not None:
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
