"""WikiText-2 (the tokenized v1 release): word-level or BPE token streams, or lines.

Files: `<data_dir>/wikitext-2/{train,valid,test}.txt`, plain or gzipped, downloaded from
pytorch/examples when missing. Token streams: every line becomes its tokens followed by `<eos>`,
as in word_language_model. Word level: the vocabulary is the words of the training split (33,278
with `<eos>`; the text already has `<unk>` for rare words), giving 2,088,628 / 217,646 / 245,569
tokens. BPE: byte-level BPE trained on the training split, with `<eos>` as a special token.
Tokenizers and token arrays are cached under `cache_dir`.
"""

from __future__ import annotations

from pathlib import Path

import tokenizers
from tokenizers import Tokenizer

from attnlab.data.loading.download import ensure_file, read_lines
from attnlab.data.loading.token_cache import TokenCache, source_key
from attnlab.data.sources.base import TokenizedCorpus
from attnlab.data.sources.lines import LineCorpus
from attnlab.data.sources.text_sources import register_text_source
from attnlab.data.tokenizers.line import LineTokenizer, train_bpe, train_word_level

URL_BASE = (
    "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2"
)
SHA256 = {  # of the uncompressed files
    "train": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
    "valid": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
    "test": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
}
FILE_SPLITS = {"train": "train", "val": "valid", "test": "test"}  # our split -> file name
TOKENIZERS = ("bpe", "word")


def wikitext_file(directory: Path, name: str, url_base: str | None = URL_BASE) -> Path:
    """`<directory>/<name>.txt` (train, valid or test), downloaded from `url_base` if missing."""
    url = f"{url_base}/{name}.txt" if url_base else None
    source = f"{URL_BASE}/{name}.txt"
    return ensure_file(directory / f"{name}.txt", url, SHA256[name], source=source)


def wikitext_files(data_dir: str | Path, url_base: str | None) -> dict[str, Path]:
    directory = Path(data_dir) / "wikitext-2"
    return {split: wikitext_file(directory, name, url_base) for split, name in FILE_SPLITS.items()}


class WikiText2Tokens:
    """WikiText-2 with `tokenizer="word"` (33,278 words) or `"bpe"` (`bpe_vocab_size` tokens).

    `url_base=None` turns downloading off.
    """

    def __init__(
        self,
        data_dir: str | Path,
        cache_dir: str | Path | None = None,
        tokenizer: str = "word",
        bpe_vocab_size: int = 8192,
        url_base: str | None = URL_BASE,
    ) -> None:
        if tokenizer not in TOKENIZERS:
            raise ValueError(
                f"data.tokenizer={tokenizer!r} is not a WikiText-2 tokenizer; "
                f"choose one of {list(TOKENIZERS)}"
            )
        if tokenizer == "bpe" and bpe_vocab_size <= 257:
            raise ValueError(
                f"data.bpe_vocab_size={bpe_vocab_size} must exceed the 256 bytes plus <eos>"
            )
        self.directory = Path(data_dir) / "wikitext-2"
        self.data_dir = data_dir
        self.cache = TokenCache(cache_dir)
        self.tokenizer_name = tokenizer
        self.bpe_vocab_size = bpe_vocab_size
        self.url_base = url_base

    def _tokenizer(self, train_file: Path, train_key: dict[str, str]) -> LineTokenizer:
        def build() -> Tokenizer:
            lines = read_lines(train_file)
            if self.tokenizer_name == "word":
                return train_word_level(lines)
            return train_bpe(lines, self.bpe_vocab_size)

        key: dict[str, object] = {"tokenizer": self.tokenizer_name, "train": train_key}
        if self.tokenizer_name == "bpe":
            # BPE merges may differ between tokenizers releases: retrain after an upgrade.
            key |= {"vocab_size": self.bpe_vocab_size, "tokenizers": tokenizers.__version__}
        return LineTokenizer(self.cache.tokenizer(f"wikitext-2/{self.tokenizer_name}", key, build))

    def load(self) -> TokenizedCorpus:
        files = wikitext_files(self.data_dir, self.url_base)
        sources = {split: source_key(path) for split, path in files.items()}
        tokenizer = self._tokenizer(files["train"], sources["train"])
        splits = {
            split: self.cache.tokens(
                f"wikitext-2/{self.tokenizer_name}/{split}",
                {"source": sources[split], "tokenizer": tokenizer.fingerprint},
                lambda path=path: tokenizer.encode_lines(read_lines(path)),
                tokenizer.vocab_size,
            )
            for split, path in files.items()
        }
        return TokenizedCorpus(
            splits, tokenizer.vocab_size, tokenizer.encode, tokenizer.decode, tokenizer.eos_id
        )


@register_text_source("wikitext2")
def wikitext2_lines(data_dir: str | Path, download: bool = True) -> LineCorpus:
    files = wikitext_files(data_dir, URL_BASE if download else None)
    return LineCorpus(
        "wikitext-2",
        {split: source_key(path) for split, path in files.items()},
        lambda: {split: read_lines(path) for split, path in files.items()},
        # `<unk>` stands for a rare word: one token, like any word, not "<", "unk", ">".
        whole_words=("<unk>",),
    )
