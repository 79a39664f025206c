"""Tiny Shakespeare, character level, split as nanoGPT's shakespeare_char.

The vocabulary is the sorted set of the characters of the whole file (65). The first 90% of the
characters are train (1,003,854) and the last 10% val (111,540). There is no separate test
split: test is the val split again, so `trainer.test` repeats validation on the best checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from attnlab.data.char_vocab import CharVocab
from attnlab.data.download import ensure_file, read_text
from attnlab.data.lm_datamodule import LanguageModelingDataModule, TokenizedCorpus
from attnlab.data.token_cache import TokenCache, source_key

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TRAIN_FRACTION = 0.9


class ShakespeareCharDataModule(LanguageModelingDataModule):
    """Reads `<data_dir>/tinyshakespeare/input.txt` (or .gz), downloading it if missing.

    `url=None` turns downloading off. Token ids are cached under `cache_dir` (default: see
    `token_cache.default_cache_dir`); the data directory may be read-only.
    """

    def __init__(
        self,
        data_dir: str | Path,
        cache_dir: str | Path | None = None,
        block_size: int = 64,
        batch_size: int = 12,
        num_workers: int = 0,
        train_samples_per_epoch: int | None = 100_000,
        shuffle_seed: int | None = None,
        pin_memory: bool = False,
        url: str | None = URL,
        sha256: str | None = SHA256,
    ) -> None:
        super().__init__(
            block_size, batch_size, num_workers, train_samples_per_epoch, shuffle_seed, pin_memory
        )
        self.path = Path(data_dir) / "tinyshakespeare" / "input.txt"
        self.cache = TokenCache(cache_dir)
        self.url = url
        self.sha256 = sha256

    def load_corpus(self) -> TokenizedCorpus:
        path = ensure_file(self.path, self.url, self.sha256, source=URL)
        text = read_text(path)
        vocab = CharVocab.from_text(text)
        tokens = self.cache.tokens(
            "tinyshakespeare/chars",
            {"source": source_key(path), "vocab": vocab.fingerprint},
            lambda: vocab.encode_array(text),
            vocab.vocab_size,
        )
        n_train = int(len(tokens) * TRAIN_FRACTION)
        val = tokens[n_train:]
        splits = {"train": tokens[:n_train], "val": val, "test": val}
        return TokenizedCorpus(splits, vocab.vocab_size, vocab.encode, vocab.decode)
