"""`attnlab-prepare`'s whole run: settings checked, the tokenizer trained (or kept), chunks
encoded into shards (finished ones kept: a killed run resumes), then the index written."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from tokenizers import Tokenizer

from attnlab.data.corpus.encoding import chunk_tasks, encoded
from attnlab.data.corpus.settings import SPLITS, PrepareError, PrepareSettings
from attnlab.data.corpus.shard_writer import ShardWriter, finished_shards
from attnlab.data.corpus.tokenizer_training import eos_id_of, tokenizer_sample, train_tokenizer
from attnlab.data.loading.atomic import atomic_path
from attnlab.data.loading.shards import (
    FORMAT,
    INDEX,
    TOKENIZER,
    TokenIndex,
    read_json,
    remove_stale,
    shard_dtype,
    write_json,
)

log = logging.getLogger(__name__)

SETTINGS = "prepare.json"


def prepare(settings: PrepareSettings) -> TokenIndex:
    """Prepare `settings.out` (resuming a killed run there); returns its index."""
    settings.check()
    root = Path(settings.out)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".prepare.lock")):  # other ranks (or runs) wait, then find it done
        return _prepare(settings, root)


def _prepare(settings: PrepareSettings, root: Path) -> TokenIndex:
    identity = settings.identity()
    previous = read_json(root / SETTINGS)
    if previous is not None and previous != identity:
        changed = sorted(k for k in identity if identity.get(k) != previous.get(k))
        raise PrepareError(
            f"out={root} was prepared with other settings ({', '.join(changed)} differ); "
            "use a new out, or delete it to start over"
        )
    if previous is not None and (root / INDEX).is_file():
        return TokenIndex.load(root)  # done already
    write_json(root / SETTINGS, identity)
    remove_stale(root)
    tokenizer = _tokenizer(settings, root / TOKENIZER)
    eos_id = eos_id_of(tokenizer, settings.eos_token)
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    dtype = shard_dtype(vocab_size)
    _write_shards(settings, root, tokenizer.to_str(), eos_id, dtype)
    splits: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    for (split, _), entry in sorted(finished_shards(root).items()):
        splits[split].append(entry)
    index = {
        "format": FORMAT,
        "dtype": dtype.name,
        "eos_id": eos_id,
        "vocab_size": vocab_size,
        "tokenizer": {"file": TOKENIZER, "fingerprint": _file_hash(root / TOKENIZER)},
        "splits": splits,
        "settings": identity,
    }
    write_json(root / INDEX, index)
    return TokenIndex.load(root)


def _tokenizer(settings: PrepareSettings, path: Path) -> Tokenizer:
    """The tokenizer saved at `path` by an earlier (killed) run, else trained and saved."""
    if path.is_file():
        return Tokenizer.from_file(str(path))
    sample = tokenizer_sample(settings) if settings.tokenizer != "file" else []
    tokenizer = train_tokenizer(settings, sample)
    with atomic_path(path) as tmp:
        tokenizer.save(str(tmp))
    return tokenizer


def _write_shards(
    settings: PrepareSettings, root: Path, tokenizer_json: str, eos_id: int, dtype: np.dtype
) -> None:
    """Every shard not finished yet, encoded and written (a failure removes the open ones)."""
    done = finished_shards(root)
    if done:
        log.info("Resuming %s: %d finished shard(s) kept", root, len(done))
    writer = ShardWriter(root, dtype)
    init = (tokenizer_json, eos_id, dtype.name)
    workers = settings.workers or os.cpu_count() or 1
    try:
        for task, (data, starts) in encoded(chunk_tasks(settings, set(done)), init, workers):
            writer.add(task, data, starts)
    except BaseException:
        writer.abort()
        raise


def _file_hash(path: Path) -> str:
    canonical = json.dumps(json.loads(path.read_text()), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
