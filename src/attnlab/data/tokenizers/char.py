"""Character-level vocabulary: one id per distinct character, in sorted order (nanoGPT's char)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def _code_points(text: str) -> np.ndarray:
    """Unicode code points of `text` as a uint32 array, without a Python loop."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


class CharVocab:
    """Ids are the ranks of the characters in sorted order, so `sorted(set(text))` gives them."""

    def __init__(self, chars: str) -> None:
        if list(chars) != sorted(set(chars)):
            raise ValueError("CharVocab needs distinct characters in sorted order")
        self.chars = chars
        self._codes = _code_points(chars)

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def fingerprint(self) -> str:
        """Identifies the vocabulary in cache keys."""
        return hashlib.sha256(self.chars.encode("utf-8")).hexdigest()

    def encode_array(self, text: str) -> np.ndarray:
        """Ids of every character of `text` (int64); unknown characters are an error."""
        codes = _code_points(text)
        ids = np.searchsorted(self._codes, codes)
        known = self._codes[np.minimum(ids, len(self._codes) - 1)] == codes
        if not known.all():
            unknown = sorted({chr(c) for c in codes[~known]})
            raise ValueError(
                f"characters {unknown} are not in the vocabulary of {self.vocab_size} characters "
                f"{self.chars!r}"
            )
        return ids.astype(np.int64)

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i] for i in ids)
