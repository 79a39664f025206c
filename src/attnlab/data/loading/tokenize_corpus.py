"""Stream a corpus through a tokenizer into token shards (loading/shards.py), on all cores.

Documents: each non-empty line of a text file (plain or .gz), each record of a JSONL file (its
`text_field`), or each record of a Hugging Face dataset (`input=hf:NAME`, when `datasets` is
installed). Empty lines are skipped. Splits: `val_input`/`test_input` name separate inputs;
without them, val and test are carved from `input` by position: of every 1000 documents, the
first `val_fraction * 1000` go to val and the next `test_fraction * 1000` to test.

Memory is bounded: documents are read in chunks of about `chunk_mb` of text, encoded by a pool
of worker processes with at most two chunks per worker in flight, and appended to the open shard;
a shard closes after about `shard_mb` of text. Everything is a deterministic function of the
input and the settings, so a run killed part-way resumes: finished shards (a shard's .json
marker is written last) are kept and their chunks are skipped without encoding; the rest are
redone and come out byte for byte as an uninterrupted run writes them. Every file is written
atomically (atomic.py).
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import importlib.util
import io
import json
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

from attnlab.data.loading.atomic import atomic_path
from attnlab.data.loading.shards import (
    FORMAT,
    INDEX,
    TOKENIZER,
    TokenIndex,
    cheap_fingerprint,
    read_json,
    remove_stale,
    shard_dtype,
    write_json,
)

log = logging.getLogger(__name__)

TOKENIZERS = ("bpe", "char", "file", "wordpiece")
SPLITS = ("train", "val", "test")
EOS_CANDIDATES = ("<eos>", "<|endoftext|>", "</s>", "[SEP]")
SETTINGS = "prepare.json"
MB = 1 << 20


class PrepareError(ValueError):
    """Bad input to `attnlab-prepare`: one line naming the key, the value and the choices."""


@dataclass
class PrepareSettings:
    """What `attnlab-prepare` takes (conf/prepare.yaml documents each)."""

    out: str
    input: str | list[str] | None = None
    val_input: str | list[str] | None = None
    test_input: str | list[str] | None = None
    val_fraction: float = 0.005
    test_fraction: float = 0.005
    text_field: str = "text"
    tokenizer: str = "bpe"
    tokenizer_path: str | None = None
    vocab_size: int = 8192
    eos_token: str | None = None
    sample_mb: float = 64.0
    chunk_mb: float = 1.0
    shard_mb: float = 256.0
    workers: int | None = None
    hf_config: str | None = None
    hf_split: str = "train"
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise PrepareError(
                f"tokenizer={self.tokenizer!r} is not a tokenizer; choose one of {list(TOKENIZERS)}"
            )
        if self.tokenizer == "file" and not self.tokenizer_path:
            raise PrepareError("tokenizer=file needs tokenizer_path=<your tokenizer.json>")
        if self.tokenizer_path and not Path(self.tokenizer_path).is_file():
            raise PrepareError(f"tokenizer_path={self.tokenizer_path} is not a file")
        if self.input is None:
            raise PrepareError(
                "input is not set: give a file, a glob ('corpus/*.txt'), a list, or hf:NAME"
            )
        for key in ("input", "val_input", "test_input"):  # before anything is written
            spec = getattr(self, key)
            if isinstance(spec, str) and spec.startswith("hf:"):
                if importlib.util.find_spec("datasets") is None:
                    raise PrepareError(
                        f"{key}={spec} needs the Hugging Face `datasets` package, which is not "
                        "installed (pip install datasets); or give local files"
                    )
            elif spec:
                input_files(key, spec)
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            if not 0 <= value < 1:
                raise PrepareError(f"{key}={value} must be in [0, 1)")
        if self.val_fraction + self.test_fraction >= 1:
            raise PrepareError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction} leaves "
                "no training data; it must be below 1"
            )
        for key in ("chunk_mb", "shard_mb", "sample_mb"):
            if getattr(self, key) <= 0:
                raise PrepareError(f"{key}={getattr(self, key)} must be positive")
        if self.tokenizer in ("bpe", "wordpiece") and self.vocab_size < 300:
            raise PrepareError(
                f"vocab_size={self.vocab_size} must be at least 300 for {self.tokenizer}"
            )

    def identity(self) -> dict[str, Any]:
        """What the shards depend on: a resume must use the same."""
        data = asdict(self)
        for key in ("out", "workers"):  # where and how fast, not what
            data.pop(key)
        return json.loads(json.dumps(data, sort_keys=True))


# --- reading documents ----------------------------------------------------------------------


def input_files(key: str, patterns: str | Sequence[str]) -> list[Path]:
    """The files of a path, a glob or a list of them, in sorted order per pattern."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    files: list[Path] = []
    for pattern in patterns:
        found = sorted(glob.glob(os.path.expanduser(str(pattern)), recursive=True))
        found = [f for f in found if Path(f).is_file()]
        if not found:
            raise PrepareError(
                f"{key}={pattern!r} matches no file; give a file, a glob ('corpus/*.txt'), "
                "a list of them, or hf:NAME"
            )
        files += [Path(f) for f in found]
    return files


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="\n")
    return open(path, encoding="utf-8", newline="\n")


def _is_jsonl(path: Path) -> bool:
    suffixes = path.suffixes[-2:] if path.suffix == ".gz" else path.suffixes[-1:]
    return bool(suffixes) and suffixes[0] in (".jsonl", ".json")


def file_documents(path: Path, text_field: str) -> Iterator[str]:
    jsonl = _is_jsonl(path)
    with _open_text(path) as file:
        for number, line in enumerate(file, 1):
            if jsonl:
                if not line.strip():
                    continue
                record = json.loads(line)
                if not isinstance(record, dict) or text_field not in record:
                    fields = sorted(record) if isinstance(record, dict) else type(record).__name__
                    raise PrepareError(
                        f"text_field={text_field!r} is not in record {number} of {path}; "
                        f"its fields: {fields}"
                    )
                text = record[text_field]
                if not isinstance(text, str):
                    raise PrepareError(
                        f"text_field={text_field!r} of record {number} of {path} is a "
                        f"{type(text).__name__}, not text"
                    )
                if text:
                    yield text
            else:
                text = line.rstrip("\n").rstrip("\r")
                if text:
                    yield text


def hf_documents(name: str, config: str | None, split: str, text_field: str) -> Iterator[str]:
    if importlib.util.find_spec("datasets") is None:
        raise PrepareError(
            f"input=hf:{name} needs the Hugging Face `datasets` package, which is not installed "
            "(pip install datasets); or give local files"
        )
    import datasets

    dataset = datasets.load_dataset(name, config, split=split, streaming=True)
    for number, record in enumerate(dataset, 1):
        if text_field not in record:
            raise PrepareError(
                f"text_field={text_field!r} is not in record {number} of hf:{name}; "
                f"its fields: {sorted(record)}"
            )
        if record[text_field]:
            yield record[text_field]


def documents(key: str, spec: str | Sequence[str], settings: PrepareSettings) -> Iterator[str]:
    if isinstance(spec, str) and spec.startswith("hf:"):
        yield from hf_documents(
            spec[3:], settings.hf_config, settings.hf_split, settings.text_field
        )
        return
    for path in input_files(key, spec):
        yield from file_documents(path, settings.text_field)


def split_documents(settings: PrepareSettings) -> Iterator[tuple[str, str]]:
    """(split, document) in input order: separate inputs, or val/test carved from `input`."""
    val_k = 0 if settings.val_input else round(settings.val_fraction * 1000)
    test_k = 0 if settings.test_input else round(settings.test_fraction * 1000)
    assert settings.input is not None
    for i, doc in enumerate(documents("input", settings.input, settings)):
        bucket = i % 1000
        yield ("val" if bucket < val_k else "test" if bucket < val_k + test_k else "train"), doc
    for split in ("val", "test"):
        spec = getattr(settings, f"{split}_input")
        if spec:
            for doc in documents(f"{split}_input", spec, settings):
                yield split, doc


# --- tokenizers ----------------------------------------------------------------------------


def char_tokenizer(sample: Iterable[str]) -> Tokenizer:
    """One token per character of the sample (sorted), `<eos>`=0 and `<unk>`=1 first."""
    chars = sorted(set(chain.from_iterable(sample)))
    vocab = {"<eos>": 0, "<unk>": 1} | {c: i + 2 for i, c in enumerate(chars)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens(["<eos>", "<unk>"])
    return tokenizer


def train_tokenizer(settings: PrepareSettings, sample: list[str]) -> Tokenizer:
    if settings.tokenizer == "file":
        assert settings.tokenizer_path is not None
        return Tokenizer.from_file(settings.tokenizer_path)
    if settings.tokenizer == "char":
        return char_tokenizer(sample)
    if settings.tokenizer == "bpe":
        from attnlab.data.tokenizers.line import train_bpe

        return train_bpe(sample, settings.vocab_size)
    from attnlab.data.tokenizers.wordpiece import train_wordpiece

    return train_wordpiece(sample, settings.vocab_size)


def eos_id_of(tokenizer: Tokenizer, eos_token: str | None) -> int:
    names = [eos_token] if eos_token else list(EOS_CANDIDATES)
    for name in names:
        token_id = tokenizer.token_to_id(name)
        if token_id is not None:
            return token_id
    key = f"eos_token={eos_token!r}" if eos_token else "eos_token=null"
    raise PrepareError(
        f"{key}: the tokenizer has none of {names}; name its end-of-text token with eos_token=..."
    )


def tokenizer_sample(settings: PrepareSettings) -> list[str]:
    """The first `sample_mb` of training documents: what BPE, WordPiece or char learn from."""
    budget, sample = settings.sample_mb * MB, []
    for split, doc in split_documents(settings):
        if split != "train":
            continue
        sample.append(doc)
        budget -= len(doc)
        if budget <= 0:
            break
    return sample


# --- encoding ------------------------------------------------------------------------------

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

    tokenizer_path = root / TOKENIZER
    if tokenizer_path.is_file():
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    else:
        sample = tokenizer_sample(settings) if settings.tokenizer != "file" else []
        tokenizer = train_tokenizer(settings, sample)
        del sample
        with atomic_path(tokenizer_path) as tmp:
            tokenizer.save(str(tmp))
    eos_id = eos_id_of(tokenizer, settings.eos_token)
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    dtype = shard_dtype(vocab_size)

    done = finished_shards(root)
    if done:
        log.info("Resuming %s: %d finished shard(s) kept", root, len(done))
    writer = ShardWriter(root, dtype)
    init = (tokenizer.to_str(), eos_id, dtype.name)
    workers = settings.workers or os.cpu_count() or 1
    try:
        for task, (data, starts) in _encoded(chunk_tasks(settings, set(done)), init, workers):
            writer.add(task, data, starts)
    except BaseException:
        writer.abort()
        raise

    splits: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    for (split, _), entry in sorted(finished_shards(root).items()):
        splits[split].append(entry)
    index = {
        "format": FORMAT,
        "dtype": dtype.name,
        "eos_id": eos_id,
        "vocab_size": vocab_size,
        "tokenizer": {"file": TOKENIZER, "fingerprint": _file_hash(tokenizer_path)},
        "splits": splits,
        "settings": identity,
    }
    write_json(root / INDEX, index)
    return TokenIndex.load(root)


def _file_hash(path: Path) -> str:
    canonical = json.dumps(json.loads(path.read_text()), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _encoded(
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
