"""The documents of `attnlab-prepare`'s inputs: each non-empty line of a text file (plain or
.gz), each record of a JSONL file (its `text_field`), or each record of a Hugging Face dataset
(`hf:NAME`); and the split each goes to."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from attnlab.data.corpus.settings import PrepareError, PrepareSettings, input_files


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="\n")
    return open(path, encoding="utf-8", newline="\n")


def _is_jsonl(path: Path) -> bool:
    suffixes = path.suffixes[-2:] if path.suffix == ".gz" else path.suffixes[-1:]
    return bool(suffixes) and suffixes[0] in (".jsonl", ".json")


def file_documents(path: Path, text_field: str) -> Iterator[str]:
    try:
        yield from _file_documents(path, text_field)
    except UnicodeDecodeError as error:  # Python's message names no file
        raise PrepareError(
            f"{path} is not UTF-8 text (byte {error.object[error.start]:#04x}); attnlab-prepare "
            "reads UTF-8 text files and JSONL, plain or .gz"
        ) from None


def _file_documents(path: Path, text_field: str) -> Iterator[str]:
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
