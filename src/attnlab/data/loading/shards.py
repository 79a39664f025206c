"""Token shards on disk: what `attnlab-prepare` writes and `data=tokens` memory-maps.

A prepared directory holds

- `index.json`: format version, dtype, EOS id, vocabulary size, the tokenizer's fingerprint
  (`tokenizer.json` lies beside it) and, per split, its shards in order, each with its token
  count, document count, a cheap fingerprint (size + hash of the first and last 64 KiB, checked
  at every start) and a full sha256 (checked on demand: `attnlab-prepare out=DIR verify=true`);
- `<split>-<k>.bin`: the token ids, raw little-endian uint16 (vocabulary <= 65536) or uint32;
- `<split>-<k>.docs.npy`: int64 offsets, in the shard, of the EOS that starts each document.

Documents are packed back to back, each *preceded* by the EOS id (it doubles as BOS), so in any
window `document_ids = cumsum(input_ids == eos_id)` says which document each token belongs to.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attnlab.data.loading.atomic import atomic_path
from attnlab.data.loading.download import UnreadableDataError

FORMAT = 1
INDEX = "index.json"
TOKENIZER = "tokenizer.json"
EDGE = 1 << 16  # bytes hashed at each end of a file by the cheap fingerprint


class ShardError(UnreadableDataError):  # bad input, one line at the command line
    """A prepared directory that is missing, incomplete or corrupted."""


def shard_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def cheap_fingerprint(path: Path) -> str:
    """Size and a hash of the first and last 64 KiB: O(1) reads, catches truncation and most
    swaps of files; not a full check (that is `full_sha256`)."""
    size = path.stat().st_size
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as file:
        digest.update(file.read(EDGE))
        if size > EDGE:
            file.seek(max(EDGE, size - EDGE))
            digest.update(file.read(EDGE))
    return f"{size}:{digest.hexdigest()}"


def full_sha256(path: Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Shard:
    """One shard of a split, as the index describes it."""

    file: str
    docs: str
    tokens: int
    documents: int
    fingerprint: str
    sha256: str

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> Shard:
        return cls(**{key: entry[key] for key in cls.__dataclass_fields__})


@dataclass(frozen=True)
class TokenIndex:
    """A prepared directory's index.json."""

    root: Path
    dtype: np.dtype
    eos_id: int
    vocab_size: int
    tokenizer_fingerprint: str
    splits: dict[str, list[Shard]]

    @classmethod
    def load(cls, root: str | Path) -> TokenIndex:
        root = Path(root)
        data = read_json(root / INDEX)
        if data is None:
            raise ShardError(
                f"data.path={root} holds no {INDEX}: prepare it first "
                f"(attnlab-prepare input=... out={root})"
            )
        if data.get("format") != FORMAT:
            raise ShardError(
                f"{root / INDEX} has format {data.get('format')}; this attnlab reads format "
                f"{FORMAT}: prepare it again"
            )
        splits = {
            name: [Shard.from_dict(s) for s in shards] for name, shards in data["splits"].items()
        }
        return cls(
            root,
            np.dtype(data["dtype"]),
            int(data["eos_id"]),
            int(data["vocab_size"]),
            data["tokenizer"]["fingerprint"],
            splits,
        )

    def tokens(self, split: str) -> int:
        return sum(shard.tokens for shard in self.splits.get(split, []))

    def open(self, split: str) -> list[np.ndarray]:
        """The split's shards, memory-mapped, after the cheap check of each (O(1) reads)."""
        arrays = []
        for shard in self.splits.get(split, []):
            path = self.root / shard.file
            if not path.is_file():
                raise ShardError(f"{path} is missing: prepare {self.root} again")
            if cheap_fingerprint(path) != shard.fingerprint:
                raise ShardError(
                    f"{path} does not match {self.root / INDEX} (size or first/last bytes "
                    f"changed): prepare again, or check with attnlab-prepare out={self.root} "
                    "verify=true"
                )
            if shard.tokens:
                arrays.append(np.memmap(path, dtype=self.dtype, mode="r", shape=(shard.tokens,)))
        return arrays

    def verify(self) -> list[str]:
        """Every shard re-hashed against the index: a list of problems (empty if all is well)."""
        problems = []
        for split, shards in self.splits.items():
            for shard in shards:
                path = self.root / shard.file
                if not path.is_file():
                    problems.append(f"{split}: {shard.file} is missing")
                    continue
                if path.stat().st_size != shard.tokens * self.dtype.itemsize:
                    problems.append(f"{split}: {shard.file} has the wrong size")
                elif full_sha256(path) != shard.sha256:
                    problems.append(f"{split}: {shard.file} is corrupted (sha256 differs)")
                docs = self.root / shard.docs
                try:
                    starts = np.load(docs)
                except (OSError, ValueError):
                    problems.append(f"{split}: {shard.docs} is missing or unreadable")
                    continue
                if len(starts) != shard.documents:
                    problems.append(f"{split}: {shard.docs} has the wrong document count")
        return problems


def remove_stale(root: Path) -> None:
    """Temporary files a killed run left (atomic_path's names start with a dot)."""
    for tmp in root.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())
