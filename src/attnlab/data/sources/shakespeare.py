"""Tiny Shakespeare: characters for causal LM (nanoGPT's shakespeare_char), lines for masked LM.

Characters: the vocabulary is the sorted set of the characters of the whole file (65). The first
90% of the characters are train (1,003,854) and the last 10% val (111,540). Lines: the first 90%
of the lines are train and the rest val. There is no separate test split in either: test is the
val split again, so `trainer.test` repeats validation on the best checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from attnlab.data.loading.download import ensure_file, read_lines, read_text
from attnlab.data.loading.token_cache import TokenCache, source_key
from attnlab.data.sources.base import TokenizedCorpus
from attnlab.data.sources.lines import LineCorpus
from attnlab.data.sources.text_sources import register_text_source
from attnlab.data.tokenizers.char import CharVocab

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TRAIN_FRACTION = 0.9


def shakespeare_file(
    data_dir: str | Path, url: str | None = URL, sha256: str | None = SHA256
) -> Path:
    """`<data_dir>/tinyshakespeare/input.txt` (or .gz), downloaded from `url` if missing."""
    path = Path(data_dir) / "tinyshakespeare" / "input.txt"
    return ensure_file(path, url, sha256, source=URL)


class ShakespeareChars:
    """The characters of Tiny Shakespeare as token streams; `url=None` turns downloading off.
    Token ids are cached under `cache_dir`; the data directory may be read-only."""

    def __init__(
        self,
        data_dir: str | Path,
        cache_dir: str | Path | None = None,
        url: str | None = URL,
        sha256: str | None = SHA256,
    ) -> None:
        self.data_dir, self.url, self.sha256 = data_dir, url, sha256
        self.cache = TokenCache(cache_dir)

    def load(self) -> TokenizedCorpus:
        path = shakespeare_file(self.data_dir, self.url, self.sha256)
        source = source_key(path)
        # The vocabulary is cached too: a start with both cached does not read the text.
        chars = self.cache.value(
            "tinyshakespeare/vocab",
            {"source": source},
            lambda: CharVocab.from_text(read_text(path)).chars,
        )
        vocab = CharVocab(chars)
        tokens = self.cache.tokens(
            "tinyshakespeare/chars",
            {"source": source, "vocab": vocab.fingerprint},
            lambda: vocab.encode_array(read_text(path)),
            vocab.vocab_size,
        )
        n_train = int(len(tokens) * TRAIN_FRACTION)
        val = tokens[n_train:]
        splits = {"train": tokens[:n_train], "val": val, "test": val}
        return TokenizedCorpus(splits, vocab.vocab_size, vocab.encode, vocab.decode)


@register_text_source("shakespeare")
def shakespeare_lines(data_dir: str | Path, download: bool = True) -> LineCorpus:
    path = shakespeare_file(data_dir, URL if download else None)

    def read() -> dict[str, list[str]]:
        lines = read_lines(path)
        n_train = int(len(lines) * TRAIN_FRACTION)
        return {"train": lines[:n_train], "val": lines[n_train:], "test": lines[n_train:]}

    key = {"source": source_key(path), "train_fraction": TRAIN_FRACTION}
    return LineCorpus("tinyshakespeare", key, read, test_is_val=True)
