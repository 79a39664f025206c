"""Encoded chunks appended to a split's open shard, each file written atomically and a
shard's marker (its index entry) last; and the finished shards a killed run left."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from attnlab.data.corpus.encoding import Task
from attnlab.data.corpus.settings import SPLITS
from attnlab.data.loading.atomic import atomic_path
from attnlab.data.loading.shards import cheap_fingerprint, read_json, write_json


class ShardWriter:
    """Appends encoded chunks to a split's open shard; a finished shard is renamed into place,
    its document offsets written, and its marker (the index entry) written last."""

    def __init__(self, root: Path, dtype: np.dtype) -> None:
        self.root, self.dtype = root, dtype
        self.open: dict[str, Any] = {}

    def name(self, split: str, shard: int) -> str:
        return f"{split}-{shard:05d}"

    def add(self, task: Task, data: bytes, starts: np.ndarray) -> None:
        o = self.open.get(task.split)
        if o is None or o["shard"] != task.shard:
            if o is not None:
                raise RuntimeError(f"{task.split} shard {o['shard']} was not finished")  # a bug
            o = self.open[task.split] = self._start(task.split, task.shard)
        o["file"].write(data)
        o["hash"].update(data)
        o["starts"].append(starts + o["tokens"])
        o["tokens"] += len(data) // self.dtype.itemsize
        if task.last:
            self._finish(self.open.pop(task.split))

    def _start(self, split: str, shard: int) -> dict[str, Any]:
        stem = self.name(split, shard)
        path = self.root / f"{stem}.bin"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        return {
            "shard": shard,
            "stem": stem,
            "path": path,
            "tmp": tmp,
            "file": open(tmp, "wb"),
            "hash": hashlib.sha256(),
            "starts": [],
            "tokens": 0,
        }

    def _finish(self, o: dict[str, Any]) -> None:
        o["file"].close()
        os.replace(o["tmp"], o["path"])
        stem = o["stem"]
        starts = np.concatenate(o["starts"]) if o["starts"] else np.zeros(0, np.int64)
        with atomic_path(self.root / f"{stem}.docs.npy") as tmp, open(tmp, "wb") as file:
            np.save(file, starts)
        entry = {
            "file": o["path"].name,
            "docs": f"{stem}.docs.npy",
            "tokens": o["tokens"],
            "documents": len(starts),
            "fingerprint": cheap_fingerprint(o["path"]),
            "sha256": o["hash"].hexdigest(),
        }
        write_json(self.root / f"{stem}.json", entry)

    def abort(self) -> None:
        for o in self.open.values():
            o["file"].close()
            o["tmp"].unlink(missing_ok=True)
        self.open = {}


def finished_shards(root: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Shards whose marker exists and whose files still match it."""
    found = {}
    for marker in root.glob("*-*.json"):
        split, _, number = marker.stem.partition("-")
        entry = read_json(marker)
        if split not in SPLITS or not number.isdigit() or entry is None:
            continue
        path = root / str(entry.get("file"))
        intact = path.is_file() and (root / str(entry.get("docs"))).is_file()
        if intact and cheap_fingerprint(path) == entry.get("fingerprint"):
            found[(split, int(number))] = entry
    return found
