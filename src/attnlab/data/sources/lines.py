"""Lines of text per split, read once: what most text sources are made of."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LineCorpus:
    """A corpus's lines per split, read on first use; `key` identifies the text in cache keys.

    Lines are the files' lines as they are (empty ones and WikiText's "= Heading =" lines
    included): what becomes of them is the consumer's business.
    """

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
