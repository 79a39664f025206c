"""Pretraining text as lines, split into train / val / test: WikiText-2, Tiny Shakespeare, SST-2
sentences (no labels), toy.

Files are found (or downloaded) and read by the same helpers as the language-modelling modules.
WikiText-2 keeps its own splits; Tiny Shakespeare has none, so the first 90% of its lines are
train and the rest val, which is also the test split; the toy text makes each split from its own
seed. SST-2's text splits as the classification data does (train.tsv less the validation
sample; that sample; dev.tsv as test), so pretraining on it never reads a sentence the classifier
is validated or tested on. Lines are the files' lines as they are (empty ones and WikiText's
"= Heading =" lines included): what becomes of them is the consumer's business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attnlab.data.download import ensure_file, read_lines
from attnlab.data.shakespeare import SHA256 as SHAKESPEARE_SHA256
from attnlab.data.shakespeare import URL as SHAKESPEARE_URL
from attnlab.data.sst2 import SHA256 as SST2_SHA256
from attnlab.data.sst2 import SOURCE as SST2_SOURCE
from attnlab.data.sst2 import read_sst2, split_off
from attnlab.data.token_cache import source_key
from attnlab.data.toy_text import TOY_TEXT_VERSION, toy_sentences
from attnlab.data.wikitext import FILE_SPLITS as WIKITEXT_FILES
from attnlab.data.wikitext import URL_BASE as WIKITEXT_URL_BASE
from attnlab.data.wikitext import wikitext_file

SPLITS = ("train", "val", "test")
CORPORA = ("wikitext2", "shakespeare", "sst2", "toy")
SHAKESPEARE_TRAIN_FRACTION = 0.9


@dataclass
class LineCorpus:
    """A corpus's lines per split, read on first use; `key` identifies the text in cache keys."""

    name: str
    key: dict[str, Any]
    read: Callable[[], dict[str, list[str]]]
    whole_words: tuple[str, ...] = ()  # words the tokenizer keeps whole (WikiText's <unk>)
    test_is_val: bool = False
    _lines: dict[str, list[str]] | None = field(default=None, init=False, repr=False)

    def lines(self, split: str) -> list[str]:
        if self._lines is None:
            self._lines = self.read()
        return self._lines[split]


def wikitext2_corpus(data_dir: str | Path, download: bool = True) -> LineCorpus:
    directory = Path(data_dir) / "wikitext-2"
    url_base = WIKITEXT_URL_BASE if download else None
    files = {
        split: wikitext_file(directory, name, url_base) for split, name in WIKITEXT_FILES.items()
    }
    return LineCorpus(
        "wikitext-2",
        {split: source_key(path) for split, path in files.items()},
        lambda: {split: read_lines(path) for split, path in files.items()},
        # `<unk>` stands for a rare word: one token, like any word, not "<", "unk", ">".
        whole_words=("<unk>",),
    )


def shakespeare_corpus(data_dir: str | Path, download: bool = True) -> LineCorpus:
    path = ensure_file(
        Path(data_dir) / "tinyshakespeare" / "input.txt",
        SHAKESPEARE_URL if download else None,
        SHAKESPEARE_SHA256,
        source=SHAKESPEARE_URL,
    )

    def read() -> dict[str, list[str]]:
        lines = read_lines(path)
        n_train = int(len(lines) * SHAKESPEARE_TRAIN_FRACTION)
        return {"train": lines[:n_train], "val": lines[n_train:], "test": lines[n_train:]}

    key = {"source": source_key(path), "train_fraction": SHAKESPEARE_TRAIN_FRACTION}
    return LineCorpus("tinyshakespeare", key, read, test_is_val=True)


def sst2_corpus(
    data_dir: str | Path, val_size: int | float = 872, split_seed: int = 1234
) -> LineCorpus:
    """SST-2's sentences without labels (task-adaptive pretraining), split like SST2DataModule's
    data with the same `val_size` and `split_seed`."""
    files = {
        name: ensure_file(
            Path(data_dir) / "sst2" / name, None, SST2_SHA256[name], source=SST2_SOURCE
        )
        for name in ("train.tsv", "dev.tsv")
    }

    def read() -> dict[str, list[str]]:
        sentences, _ = read_sst2(files["train.tsv"])
        train, val = split_off(len(sentences), val_size, split_seed)
        return {
            "train": [sentences[i] for i in train],
            "val": [sentences[i] for i in val],
            "test": read_sst2(files["dev.tsv"])[0],
        }

    key = {name: source_key(path) for name, path in files.items()}
    key.update(val_size=val_size, split_seed=split_seed)
    return LineCorpus("sst2", key, read)


def toy_corpus(seed: int, num_train_lines: int, num_eval_lines: int) -> LineCorpus:
    """Sentences of `toy_text`; train, val and test come from seeds spawned from `seed`."""
    seeds = dict(zip(SPLITS, np.random.SeedSequence(seed).spawn(3), strict=True))
    sizes = {"train": num_train_lines, "val": num_eval_lines, "test": num_eval_lines}
    return LineCorpus(
        "toy",
        {"seed": seed, "sizes": sizes, "version": TOY_TEXT_VERSION},
        lambda: {split: toy_sentences(sizes[split], seeds[split]) for split in SPLITS},
    )
