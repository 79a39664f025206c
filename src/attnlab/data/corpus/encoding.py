"""A corpus encoded in chunks of about `chunk_mb` of text by a pool of worker processes, at
most two chunks per worker in flight, in input order (so a resumed run writes the same bytes)."""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from attnlab.data.corpus.documents import split_documents
from attnlab.data.corpus.settings import MB, SPLITS, PrepareSettings

_worker: dict[str, Any] = {}


def _init_worker(tokenizer_json: str, eos_id: int, dtype: str) -> None:
    _worker.update(tokenizer=Tokenizer.from_str(tokenizer_json), eos=eos_id, dtype=np.dtype(dtype))


def encode_chunk(docs: list[str]) -> tuple[bytes, np.ndarray]:
    """(token bytes, document start offsets in them): EOS then the document's ids, per doc."""
    tokenizer, eos = _worker["tokenizer"], _worker["eos"]
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    encodings = encode(docs, add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) + 1 for e in encodings), dtype=np.int64, count=len(docs))
    ids = np.fromiter(
        chain.from_iterable(chain((eos,), e.ids) for e in encodings),
        dtype=np.int64,
        count=int(lengths.sum()),
    )
    starts = np.cumsum(lengths) - lengths  # exclusive: no start at all for an empty chunk
    return ids.astype(_worker["dtype"]).tobytes(), starts


@dataclass
class Task:
    split: str
    shard: int
    last: bool  # the shard's last chunk
    docs: list[str]


def chunk_tasks(settings: PrepareSettings, done: set[tuple[str, int]]) -> Iterator[Task]:
    """Chunks of each split in input order, shard numbers assigned by text size; chunks of
    finished shards are read but not handed out."""
    chunk_chars, shard_chars = settings.chunk_mb * MB, settings.shard_mb * MB
    state = {split: {"shard": 0, "in_shard": 0, "in_chunk": 0, "docs": []} for split in SPLITS}

    def flush(split: str, last: bool) -> Iterator[Task]:
        s = state[split]
        if (split, s["shard"]) not in done:
            yield Task(split, s["shard"], last, s["docs"])
        s["docs"], s["in_chunk"] = [], 0
        if last:
            s["shard"], s["in_shard"] = s["shard"] + 1, 0

    for split, doc in split_documents(settings):
        s = state[split]
        s["docs"].append(doc)
        s["in_chunk"] += len(doc)
        s["in_shard"] += len(doc)
        if s["in_chunk"] >= chunk_chars:
            yield from flush(split, last=s["in_shard"] >= shard_chars)
    for split in SPLITS:
        if state[split]["docs"] or state[split]["in_shard"]:
            yield from flush(split, last=True)


def encoded(
    tasks: Iterator[Task], init: tuple[str, int, str], workers: int
) -> Iterator[tuple[Task, tuple[bytes, np.ndarray]]]:
    """Each task with its encoding, in order; at most 2 chunks per worker in flight."""
    if workers <= 1:
        _init_worker(*init)
        for task in tasks:
            yield task, encode_chunk(task.docs)
        return
    # One process per core: the Rust thread pool inside each would only compete for them.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=init) as pool:
        pending: deque[tuple[Task, Any]] = deque()
        for task in tasks:
            pending.append((task, pool.apply_async(encode_chunk, (task.docs,))))
            if len(pending) >= 2 * workers:
                done_task, result = pending.popleft()
                yield done_task, result.get()
        while pending:
            done_task, result = pending.popleft()
            yield done_task, result.get()
