"""Tokenise once: token arrays and trained tokenizers cached on disk, keyed by what made them.

Each entry is `<name>.<digest>.npy` (or `.tokenizer.json`) with a `.meta.json` beside it holding
the full key: the identity of the source files (sha256) and the tokenizer's configuration or
vocabulary fingerprint. The digest in the file name is a hash of that key, so a changed source or
tokenizer gets a new entry, and runs with different settings (a sweep over BPE vocabulary sizes,
say) never overwrite each other's entries. Old entries are not deleted: the cache directory can be
removed at any time.

Writes are atomic and the metadata is written last, as a commit mark. The sha256s of sources and
entries are memoised by file identity (`download.file_sha256`): a start with nothing changed
re-reads neither the corpus nor the token array. An entry whose metadata is
missing or unreadable, whose array fails to load or has the wrong length or dtype (a truncated
file), is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from attnlab.data.loading.atomic import atomic_path
from attnlab.data.loading.download import file_sha256

log = logging.getLogger(__name__)

FORMAT = 2  # bump to invalidate every cache entry when the layout or the encoding changes


def default_cache_dir() -> Path:
    """$ATTNLAB_CACHE_DIR, else $XDG_CACHE_HOME/attnlab, else ~/.cache/attnlab."""
    if os.environ.get("ATTNLAB_CACHE_DIR"):
        return Path(os.environ["ATTNLAB_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "attnlab"


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (half the disk and memory), else int32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.int32)


def source_key(path: Path) -> dict[str, str]:
    """What identifies a source file in a cache key: its content, not where it lives."""
    return {"file": path.name, "sha256": file_sha256(path)}


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    """sha256 of the tokenizer's JSON with keys sorted (its vocab map serialises unordered)."""
    canonical = json.dumps(json.loads(tokenizer.to_str()), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


class TokenCache:
    """Cached token arrays (memory-mapped) and tokenizers under a writable `cache_dir`."""

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    def tokens(
        self,
        name: str,
        key: Mapping[str, Any],
        build: Callable[[], np.ndarray],
        vocab_size: int,
    ) -> np.ndarray:
        """The 1-D token array for `key`, memory-mapped; `build()` makes it on a cache miss."""
        stem, full_key = self._entry("tokens", name, key)
        array_path, meta_path = _suffixed(stem, ".npy"), _suffixed(stem, ".meta.json")
        meta = _read_json(meta_path)
        if meta is not None and meta.get("key") == full_key:
            try:
                if _intact(array_path, meta):
                    tokens = np.load(array_path, mmap_mode="r")
                    if tokens.shape == (meta["length"],) and tokens.dtype == meta["dtype"]:
                        return tokens
            except (OSError, ValueError, KeyError, TypeError):  # truncated or garbled: rebuild
                pass
            log.warning("Token cache %s is damaged; rebuilding it", array_path)
        log.info("Tokenising %s into %s", name, array_path)
        tokens = _checked(np.asarray(build()), vocab_size, name)
        with atomic_path(array_path) as tmp, open(tmp, "wb") as file:
            np.save(file, tokens)
        meta = {"key": full_key, "length": len(tokens), "dtype": tokens.dtype.name}
        _write_json(meta_path, {**meta, "sha256": file_sha256(array_path)})
        return np.load(array_path, mmap_mode="r")

    def tokenizer(
        self, name: str, key: Mapping[str, Any], build: Callable[[], Tokenizer]
    ) -> Tokenizer:
        """The trained tokenizer for `key`; `build()` trains it on a cache miss."""
        stem, full_key = self._entry("tokenizer", name, key)
        json_path, meta_path = self.tokenizer_path(name, key), _suffixed(stem, ".meta.json")
        meta = _read_json(meta_path)
        if meta is not None and meta.get("key") == full_key:
            try:
                if _intact(json_path, meta):
                    return Tokenizer.from_file(str(json_path))
            except Exception:  # tokenizers raises plain Exception on missing or bad JSON
                pass
            log.warning("Tokenizer cache %s is damaged; rebuilding it", json_path)
        log.info("Training tokenizer %s into %s", name, json_path)
        tokenizer = build()
        with atomic_path(json_path) as tmp:
            tokenizer.save(str(tmp))
        _write_json(meta_path, {"key": full_key, "sha256": file_sha256(json_path)})
        return tokenizer

    def value(self, name: str, key: Mapping[str, Any], build: Callable[[], Any]) -> Any:
        """A small JSON value for `key` (a vocabulary, say); `build()` makes it on a miss."""
        stem, full_key = self._entry("value", name, key)
        path = _suffixed(stem, ".value.json")
        stored = _read_json(path)
        if stored is not None and stored.get("key") == full_key and "value" in stored:
            return stored["value"]
        value = build()
        _write_json(path, {"key": full_key, "value": value})
        return value

    def tokenizer_path(self, name: str, key: Mapping[str, Any]) -> Path:
        """Where `tokenizer(name, key, ...)` keeps its tokenizer.json."""
        stem, _ = self._entry("tokenizer", name, key)
        return _suffixed(stem, ".tokenizer.json")

    def _entry(self, kind: str, name: str, key: Mapping[str, Any]) -> tuple[Path, dict[str, Any]]:
        """(path without suffix, key as stored); JSON round trip so tuples compare as lists."""
        full_key = {"format": FORMAT, "kind": kind, "name": name, **key}
        full_key = json.loads(json.dumps(full_key, sort_keys=True))
        digest = hashlib.sha256(json.dumps(full_key, sort_keys=True).encode()).hexdigest()[:16]
        return self.cache_dir / f"{name}.{digest}", full_key


def _suffixed(stem: Path, suffix: str) -> Path:
    return stem.with_name(stem.name + suffix)  # not with_suffix: the digest looks like one


def _checked(tokens: np.ndarray, vocab_size: int, name: str) -> np.ndarray:
    if tokens.ndim != 1:
        raise ValueError(f"{name}: tokens must be 1-D, got shape {tokens.shape}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(
            f"{name}: token ids span [{tokens.min()}, {tokens.max()}], "
            f"outside a vocabulary of {vocab_size}"
        )
    return tokens.astype(token_dtype(vocab_size), copy=False)


def _intact(path: Path, meta: Mapping[str, Any]) -> bool:
    """Whether a cache file still has the sha256 recorded when it was written: a file that
    loads but was altered (or cut at a plausible length) is caught too."""
    return path.is_file() and file_sha256(path) == meta.get("sha256")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
