"""Your own text files as a corpus: plain or gzipped, one file, a list, or glob patterns per split.

Paths are relative to `data_dir` (or absolute); a pattern's matches are read in sorted order and
their lines laid end to end. `test=None`: the corpus has no test split, and test repeats val.
Files are found when the text is first used, so a config that names them can be composed and
instantiated before they exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from attnlab.data.loading.download import MissingDataError, ensure_file, read_lines
from attnlab.data.loading.token_cache import source_key
from attnlab.data.sources.base import SPLITS

Patterns = str | Sequence[str]


class LocalText:
    """Lines of local files per split: a `sources.base.TextSource` for masked LM, and for causal
    LM through `sources.line_tokens.LineTokens`. `name` names the cache entries."""

    def __init__(
        self,
        train: Patterns,
        val: Patterns,
        test: Patterns | None = None,
        data_dir: str | Path = ".",
        name: str = "files",
    ) -> None:
        self.patterns = {"train": train, "val": val, "test": test if test is not None else val}
        self.data_dir = Path(data_dir)
        self.name = name
        self.whole_words: tuple[str, ...] = ()
        self.test_is_val = test is None

    def files(self, split: str) -> list[Path]:
        """The split's files: a pattern's matches in sorted order; a plain name is that file or
        its .gz."""
        patterns = self.patterns[split]
        found: list[Path] = []
        for pattern in [patterns] if isinstance(patterns, str) else patterns:
            path = self.data_dir / pattern  # an absolute pattern stays as it is
            if not any(char in pattern for char in "*?["):
                found.append(ensure_file(path, source=f"the {split} files of data {self.name}"))
                continue
            root = Path(path.anchor)
            matches = sorted(p for p in root.glob(str(path.relative_to(root))) if p.is_file())
            if not matches:
                raise MissingDataError(f"data {self.name}: no {split} file matches {path}")
            found += matches
        return found

    @cached_property
    def key(self) -> dict[str, Any]:
        return {split: [source_key(path) for path in self.files(split)] for split in SPLITS}

    def lines(self, split: str) -> list[str]:
        return [line for path in self.files(split) for line in read_lines(path)]
