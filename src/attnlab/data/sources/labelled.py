"""Labelled sentences in files, for classification: the generic source and its split rules.

A source names one file per split (`files`); where val and train name the same file, val is a
uniform random sample of it (`val_size` examples, or a fraction, drawn with `split_seed`) and
train the rest. `LabelledFiles` reads TSV or CSV files with a header, or JSON lines, plain or
gzipped: a new classification dataset is a YAML file that points at its files (see
conf/data/tsv_classification.yaml), with no Python code.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from attnlab.data.loading.download import ensure_file, read_text
from attnlab.data.loading.token_cache import source_key
from attnlab.data.sources.base import SPLITS


def split_off(num_examples: int, val_size: int | float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices), both sorted: a uniform random sample of `val_size`
    examples (a float in (0, 1): that fraction) is val, the rest train."""
    if isinstance(val_size, float):
        if not 0.0 < val_size < 1.0:
            raise ValueError(
                f"data.val_size={val_size} must be a count (int) or a fraction in (0, 1)"
            )
        val_size = round(val_size * num_examples)
    if not 0 < val_size < num_examples:
        raise ValueError(
            f"data.val_size={val_size} must be between 1 and {num_examples - 1}, "
            f"the training examples less one"
        )
    order = np.random.default_rng(seed).permutation(num_examples)
    return np.sort(order[val_size:]), np.sort(order[:val_size])


class LabelledSource:
    """Sentences with class ids in one file per split. Subclasses say where a file is
    (`path`) and how to read it (`read`); `name` names the cache entries."""

    def __init__(
        self,
        name: str,
        directory: str | Path,
        files: Mapping[str, str],
        num_classes: int,
        val_size: int | float = 0.1,
        split_seed: int = 1234,
    ) -> None:
        if set(files) != set(SPLITS):
            raise ValueError(f"data files {dict(files)} must name a file for each of {SPLITS}")
        self.name = name
        self.directory = Path(directory)
        self.files = dict(files)
        self._num_classes = num_classes
        self.val_size = val_size
        self.split_seed = split_seed

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def path(self, file: str) -> Path:
        """Where `file` (or its .gz) is; MissingDataError when it is not there."""
        return ensure_file(self.directory / file, source=f"your {self.name} files")

    def read(self, path: Path) -> tuple[list[str], np.ndarray]:
        """(sentences, class ids) of a file."""
        raise NotImplementedError

    def tokenizer_key(self) -> dict[str, object]:
        """Identifies the text a tokenizer is trained on (the training file's sentences)."""
        return {"train": source_key(self.path(self.files["train"]))}

    def tokenizer_text(self) -> list[str]:
        return self.read(self.path(self.files["train"]))[0]

    def indices(self, split: str, num_examples: int) -> np.ndarray:
        """The examples of `split` among the `num_examples` of its file."""
        if split in ("train", "val") and self.files["train"] == self.files["val"]:
            train, val = split_off(num_examples, self.val_size, self.split_seed)
            return train if split == "train" else val
        return np.arange(num_examples)


class LabelledFiles(LabelledSource):
    """TSV, CSV (a header row naming the columns) or JSON lines, by file ending (.gz allowed).

    `labels`: the class names in class-id order; None: the sorted distinct labels of the training
    file. `val=None`: val is split off train. File names are relative to `data_dir` (a missing
    `x.tsv` is looked for as `x.tsv.gz`); `name` names the cache entries.
    """

    def __init__(
        self,
        data_dir: str | Path,
        train: str,
        test: str,
        val: str | None = None,
        name: str = "labelled",
        text_column: str = "sentence",
        label_column: str = "label",
        labels: Sequence[str] | None = None,
        val_size: int | float = 0.1,
        split_seed: int = 1234,
    ) -> None:
        files = {"train": train, "val": val or train, "test": test}
        super().__init__(name, data_dir, files, 0, val_size, split_seed)
        self.text_column, self.label_column = text_column, label_column
        self.labels = list(labels) if labels is not None else None

    def _rows(self, path: Path) -> list[dict[str, object]]:
        text = read_text(path)
        kind = path.name.removesuffix(".gz").rsplit(".", 1)[-1]
        if kind == "jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        if kind in ("tsv", "csv"):
            # TSV as GLUE writes it: tabs only, quotes are text.
            quoting = csv.QUOTE_NONE if kind == "tsv" else csv.QUOTE_MINIMAL
            delimiter = "\t" if kind == "tsv" else ","
            return list(csv.DictReader(io.StringIO(text), delimiter=delimiter, quoting=quoting))
        raise ValueError(f"{path}: a labelled file ends in .tsv, .csv or .jsonl (or with .gz)")

    def _columns(self, path: Path) -> tuple[list[str], list[str]]:
        rows = self._rows(path)
        for column in (self.text_column, self.label_column):
            if rows and column not in rows[0]:
                raise ValueError(f"{path} has no column {column!r}; it has {list(rows[0])}")
        texts = [str(row[self.text_column]).strip() for row in rows]
        return texts, [str(row[self.label_column]) for row in rows]

    def label_names(self) -> list[str]:
        if self.labels is None:
            self.labels = sorted(set(self._columns(self.path(self.files["train"]))[1]))
        return self.labels

    @property
    def num_classes(self) -> int:
        return len(self.label_names())

    def read(self, path: Path) -> tuple[list[str], np.ndarray]:
        texts, labels = self._columns(path)
        ids = {label: index for index, label in enumerate(self.label_names())}
        unknown = sorted(set(labels) - set(ids))
        if unknown:
            raise ValueError(f"{path}: labels {unknown} are not among {list(ids)}")
        return texts, np.asarray([ids[label] for label in labels], dtype=np.int64)
