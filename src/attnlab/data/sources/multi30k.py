"""Multi30k (task 1): German-English image descriptions, for translation in either direction.

Files: `<data_dir>/multi30k/{train,val,test_2016_flickr}.{de,en}`, plain or gzipped (as the
source ships them), line-aligned, 29,000 / 1,014 / 1,000 pairs of raw, cased sentences; missing
files are downloaded (gzipped, checked against the sha256 of the .gz) from `url_base`.

BPE (`translation_tokenizer`) is trained on the training split only: one vocabulary over both
languages (`vocab="joint"`) or one per language (`"separate"`). Tokenizers and token arrays are
cached under `cache_dir`. Items are (tokens `</s>`, `<s>` tokens `</s>`, line number);
`modules.seq2seq` batches them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tokenizers
from torch.utils.data import Dataset

from attnlab.data.loading.download import UnreadableDataError, ensure_file, read_lines
from attnlab.data.loading.packing import Lines
from attnlab.data.loading.token_cache import TokenCache, source_key, tokenizer_fingerprint
from attnlab.data.spec import DataSpec
from attnlab.data.tokenizers.translation import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    TranslationTokenizer,
    train_metaspace_bpe,
)

URL_BASE = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw"
SHA256_GZ = {  # of the .gz files as the source serves them
    "train.de": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "val.de": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "test_2016_flickr.de": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
}
FILE_SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}
LANGUAGES = ("de", "en")
VOCABS = ("joint", "separate")


def multi30k_file(directory: Path, name: str, url_base: str | None = URL_BASE) -> Path:
    """`<directory>/<name>` (e.g. train.de) or its .gz; else the .gz downloaded from url_base."""
    if (directory / name).is_file():  # an uncompressed copy of your own is used as it is
        if (directory / name).stat().st_size == 0:  # it would train and test on nothing
            raise UnreadableDataError(f"{directory / name} is empty: multi30k needs its text")
        return directory / name
    url = f"{url_base}/{name}.gz" if url_base else None
    source = f"{URL_BASE}/{name}.gz"
    return ensure_file(directory / f"{name}.gz", url, SHA256_GZ[name], source=source)


class TranslationPairs(Dataset):
    """Item i: (source ids + `</s>`, `<s>` + target ids + `</s>`, i), cut to `max_len` each."""

    def __init__(self, source: Lines, target: Lines, max_len: int) -> None:
        if len(source) != len(target):
            raise ValueError(f"{len(source)} source lines but {len(target)} target lines")
        self.source, self.target, self.max_len = source, target, max_len
        # Lengths as batched: what the token budget counts.
        self.src_lengths = np.minimum(source.lengths + 1, max_len)
        self.tgt_lengths = np.minimum(target.lengths + 2, max_len)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[list[int], list[int], int]:
        src = self.source.line(index)[: self.max_len - 1].tolist()
        tgt = self.target.line(index)[: self.max_len - 2].tolist()
        return [*src, EOS_ID], [BOS_ID, *tgt, EOS_ID], index


class Multi30k:
    """Multi30k `source_lang` -> `target_lang` ("de" -> "en" or "en" -> "de").

    `bpe_vocab_size` is the joint vocabulary, or each side's (`tgt_bpe_vocab_size` sets the
    target's apart). `max_lines` keeps the first lines of every split (quick tests).
    `tokenizer_path`: a saved tokenizer (a checkpoint's) instead of training one. `download=False`
    or `url_base=None` turns downloading off.
    """

    pad_id = PAD_ID

    def __init__(
        self,
        data_dir: str | Path,
        cache_dir: str | Path | None = None,
        source_lang: str = "de",
        target_lang: str = "en",
        vocab: str = "joint",
        bpe_vocab_size: int = 8000,
        tgt_bpe_vocab_size: int | None = None,
        max_len: int = 256,
        max_lines: int | None = None,
        tokenizer_path: str | Path | None = None,
        download: bool = True,
        url_base: str | None = URL_BASE,
    ) -> None:
        if {source_lang, target_lang} != set(LANGUAGES):
            raise ValueError(
                f"data.source_lang={source_lang!r}, data.target_lang={target_lang!r}: "
                f"Multi30k translates between {LANGUAGES[0]!r} and {LANGUAGES[1]!r}"
            )
        if vocab not in VOCABS:
            raise ValueError(f"data.vocab={vocab!r}: choose one of {list(VOCABS)}")
        if max_len < 3:
            raise ValueError(f"data.max_len={max_len} must be at least 3: <s> a token </s>")
        if max_lines is not None and max_lines < 1:
            raise ValueError(f"data.max_lines={max_lines} must be positive (or null: all)")
        self.directory = Path(data_dir) / "multi30k"
        self.cache = TokenCache(cache_dir)
        self.source_lang, self.target_lang = source_lang, target_lang
        self.vocab = vocab
        self.bpe_vocab_size = bpe_vocab_size
        self.tgt_bpe_vocab_size = tgt_bpe_vocab_size or bpe_vocab_size
        self.max_len = max_len
        self.max_lines = max_lines
        self.tokenizer_path = tokenizer_path
        self.url_base = url_base if download else None
        self._tokenizer: TranslationTokenizer | None = None

    def file(self, split: str, lang: str) -> Path:
        return multi30k_file(self.directory, f"{FILE_SPLITS[split]}.{lang}", self.url_base)

    def lines(self, split: str, lang: str) -> list[str]:
        """The sentences of a split (the first `max_lines`), raw."""
        lines = read_lines(self.file(split, lang))
        return lines if self.max_lines is None else lines[: self.max_lines]

    def _trained(self, langs: Sequence[str], vocab_size: int) -> tokenizers.Tokenizer:
        key = {
            "train": [source_key(self.file("train", lang)) for lang in langs],
            "max_lines": self.max_lines,
            "vocab_size": vocab_size,
            "model": "metaspace-bpe",
            # BPE merges may differ between tokenizers releases: retrain after an upgrade.
            "tokenizers": tokenizers.__version__,
        }

        def build() -> tokenizers.Tokenizer:
            return train_metaspace_bpe(
                [line for lang in langs for line in self.lines("train", lang)], vocab_size
            )

        return self.cache.tokenizer(f"multi30k/bpe.{'+'.join(langs)}", key, build)

    @property
    def tokenizer(self) -> TranslationTokenizer:
        """Trained on the training split (cached), or loaded from `tokenizer_path`."""
        if self._tokenizer is None:
            if self.tokenizer_path is not None:
                self._tokenizer = TranslationTokenizer.from_file(self.tokenizer_path)
            elif self.vocab == "joint":
                self._tokenizer = TranslationTokenizer(
                    self._trained(LANGUAGES, self.bpe_vocab_size)
                )
            else:
                self._tokenizer = TranslationTokenizer(
                    self._trained([self.source_lang], self.bpe_vocab_size),
                    self._trained([self.target_lang], self.tgt_bpe_vocab_size),
                )
        return self._tokenizer

    @property
    def spec(self) -> DataSpec:
        tokenizer = self.tokenizer
        return DataSpec(
            task="seq2seq",
            vocab_size=tokenizer.src_vocab_size,
            tgt_vocab_size=tokenizer.tgt_vocab_size,
            decode=tokenizer.decode,
            encode=tokenizer.encode_source,
            max_len=self.max_len,
            pad_id=PAD_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            detokenized=True,
        )

    def _tokens(self, split: str, side: str) -> Lines:
        lang = self.source_lang if side == "source" else self.target_lang
        tokenizer = self.tokenizer
        hf = tokenizer.source if side == "source" else tokenizer.target
        path = self.file(split, lang)
        stream = self.cache.tokens(
            f"multi30k/{split}.{lang}",
            {
                "source": source_key(path),
                "max_lines": self.max_lines,
                "tokenizer": tokenizer_fingerprint(hf),
            },
            lambda: tokenizer.encode_lines(self.lines(split, lang), side),
            hf.get_vocab_size(with_added_tokens=True),
        )
        return Lines.from_stream(stream, EOS_ID)

    def prepare(self) -> None:
        for split in FILE_SPLITS:  # downloads once, on the first rank of each node
            for lang in LANGUAGES:
                self.file(split, lang)
        self.tokenizer  # noqa: B018  # trains and caches it

    def datasets(self) -> dict[str, TranslationPairs]:
        pairs = {}
        for split in FILE_SPLITS:
            source, target = self._tokens(split, "source"), self._tokens(split, "target")
            if len(source) != len(target):  # one sentence per line, aligned by line
                raise UnreadableDataError(
                    f"{self.file(split, self.source_lang)} has {len(source)} lines but "
                    f"{self.file(split, self.target_lang)} has {len(target)}: a {split} "
                    "sentence pair is one line in each"
                )
            pairs[split] = TranslationPairs(source, target, self.max_len)
        return pairs
