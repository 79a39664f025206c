"""What `attnlab-prepare` takes (conf/prepare.yaml documents each key), checked before
anything is written, and the error of a bad value."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TOKENIZERS = ("bpe", "char", "file", "wordpiece")
SPLITS = ("train", "val", "test")
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
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise PrepareError(f"out={self.out} is a file; give a directory for the shards")
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
            elif spec and all(f.stat().st_size == 0 for f in input_files(key, spec)):
                raise PrepareError(f"{key}={spec!r} is empty: there is no text to prepare")
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
