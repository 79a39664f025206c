"""What a source hands a task's DataModule, one kind per task family.

- `TokenStreams` (causal LM): a tokenised corpus, one 1-D id stream per split.
- `TextSource` (masked LM, or causal LM through `sources.line_tokens.LineTokens`): lines per split.
- `labelled.LabelledSource` (classification): sentences with class ids, one file per split.
- `PairSource` (seq2seq): (source, target, index) datasets and their spec.

A source is cheap to construct: files are found, downloaded and read on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from torch.utils.data import Dataset

from attnlab.data.spec import DataSpec

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TokenizedCorpus:
    """Token streams of the splits and the vocabulary that reads them."""

    splits: Mapping[str, np.ndarray]  # "train", "val", "test" -> 1-D ids
    vocab_size: int
    encode: Callable[[str], list[int]]
    decode: Callable[[Sequence[int]], str]
    eos_id: int | None = None


@runtime_checkable
class TokenStreams(Protocol):
    """A causal-LM source."""

    def load(self) -> TokenizedCorpus: ...


@runtime_checkable
class TextSource(Protocol):
    """Lines of text per split. `key` identifies the text in cache keys and `name` names its
    cache entries; `whole_words` are words a tokenizer keeps whole (WikiText's <unk>);
    `test_is_val`: the corpus has no test split of its own."""

    name: str
    whole_words: tuple[str, ...]
    test_is_val: bool

    @property
    def key(self) -> Mapping[str, Any]: ...

    def lines(self, split: str) -> list[str]: ...


class PairSource(Protocol):
    """A seq2seq source: items (source ids, target ids with BOS/EOS, index) per split."""

    pad_id: int

    @property
    def spec(self) -> DataSpec: ...

    def prepare(self) -> None:
        """Fetch files and train tokenizers (Lightning's prepare_data)."""

    def datasets(self) -> dict[str, Dataset]: ...
