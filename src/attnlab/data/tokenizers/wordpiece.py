"""BERT's WordPiece tokenizer, trained with Hugging Face `tokenizers` and cached on disk.

Text is normalised as uncased BERT does it (clean up, lower case, strip accents, space around
CJK characters), split into words and punctuation, and each word into wordpieces (`##` marks a
piece that continues a word). Tokenizers trained here put the five special tokens at ids 0-4,
`[PAD]`=0 `[UNK]`=1 `[CLS]`=2 `[SEP]`=3 `[MASK]`=4; a loaded one (bert-base-uncased's: 0 and
100-103) keeps its own ids, which data code reads from the tokenizer (`cls_id`, `sep_id`, ...).

Special tokens come only from the data code: text that reads "[SEP]" is encoded as the
characters it is, never as the special token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers
from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from attnlab.data.loading.atomic import atomic_path
from attnlab.data.loading.packing import encode_stream
from attnlab.data.loading.token_cache import TokenCache

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))
# Trainer settings; part of every cache key, so changing one retrains.
SETTINGS = {"lowercase": True, "min_frequency": 2, "limit_alphabet": 1000, "prefix": "##"}


def _bert_tokenizer(model: models.WordPiece) -> Tokenizer:
    """`model` inside uncased BERT's normaliser, pre-tokenizer, decoder and templates."""
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=SETTINGS["lowercase"])
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # cleanup=False: the cleanup heuristics glue punctuation and contractions back together,
    # so decode would no longer give the words that were encoded.
    tokenizer.decoder = decoders.WordPiece(prefix=SETTINGS["prefix"], cleanup=False)
    # Not used by this module (it places specials itself); it makes tokenizer.json a complete
    # BERT tokenizer for other tools, e.g. transformers' PreTrainedTokenizerFast.
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", CLS_ID), ("[SEP]", SEP_ID)],
    )
    return tokenizer


def _continuations(tokenizer: Tokenizer, lines: Sequence[str]) -> list[str]:
    """The tokens "##c", sorted, for every character c of the normalised text that can continue
    a word.

    The trainer makes these tokens as it meets them, with ids in hash-map order, and the ids
    break ties between merges: two trainings on the same text could give different vocabularies
    (huggingface/tokenizers#1794). Handed to the trainer up front, they get fixed ids and the
    training is deterministic.
    """
    normalised = {c for raw in set("".join(lines)) for c in tokenizer.normalizer.normalize_str(raw)}
    pre_tokenize = tokenizer.pre_tokenizer.pre_tokenize_str
    return sorted(SETTINGS["prefix"] + c for c in normalised if len(pre_tokenize("a" + c)) == 1)


def train_wordpiece(
    lines: Iterable[str], vocab_size: int, whole_words: Sequence[str] = ()
) -> Tokenizer:
    """A WordPiece vocabulary of `vocab_size` tokens (fewer if the text is small); the same
    text and settings always give the same vocabulary.

    `whole_words` are kept as one token each (WikiText's `<unk>`), added after the trained
    vocabulary: training leaves room for them, so the total is still `vocab_size`.
    """
    lines = list(lines)
    prefix = SETTINGS["prefix"]
    tokenizer = _bert_tokenizer(
        models.WordPiece(unk_token="[UNK]", continuing_subword_prefix=prefix)
    )
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size - len(whole_words),
        min_frequency=SETTINGS["min_frequency"],
        limit_alphabet=SETTINGS["limit_alphabet"],
        continuing_subword_prefix=prefix,
        special_tokens=[*SPECIAL_TOKENS, *_continuations(tokenizer, lines)],
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer)
    # Rebuilt from the trained vocabulary so that only the five specials are special (the
    # "##c" tokens given to the trainer become ordinary tokens).
    vocab = tokenizer.get_vocab(with_added_tokens=False)
    tokenizer = _bert_tokenizer(
        models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix=prefix)
    )
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    # Added after training: tokens added before are lost when the trainer builds the vocabulary.
    tokenizer.add_tokens([AddedToken(word, normalized=False) for word in whole_words])
    return tokenizer


class WordPieceTokenizer:
    """Encode and decode text with a WordPiece `Tokenizer` that has the five special tokens.

    Their ids (`pad_id`, `unk_id`, `cls_id`, `sep_id`, `mask_id`, all in `special_ids`) are
    the tokenizer's own: 0-4 for one trained by attnlab, 0 and 100-103 for bert-base's.
    `path` is the tokenizer.json it was loaded from or cached at (None if it lives in memory
    only). `fingerprint` identifies the vocabulary: a model and the data it is fine-tuned on
    must have the same one.
    """

    def __init__(self, tokenizer: Tokenizer, path: Path | None = None) -> None:
        ids = [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS]
        missing = [token for token, i in zip(SPECIAL_TOKENS, ids, strict=True) if i is None]
        if missing:
            raise ValueError(
                f"tokenizer{f' {path}' if path else ''} lacks the special tokens {missing}; "
                f"a WordPiece tokenizer needs all of {list(SPECIAL_TOKENS)}"
            )
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = ids
        self.special_ids: tuple[int, ...] = tuple(ids)
        tokenizer.encode_special_tokens = True  # not saved in tokenizer.json: set on every load
        self.tokenizer = tokenizer
        self.path = path
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        in_id_order = sorted(vocab, key=vocab.__getitem__)
        self.fingerprint = hashlib.sha256("\n".join(in_id_order).encode("utf-8")).hexdigest()

    @classmethod
    def from_file(cls, path: str | Path) -> WordPieceTokenizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer_path={path} does not exist (or is not a file)")
        return cls(Tokenizer.from_file(str(path)), path)

    @classmethod
    def from_json(cls, text: str) -> WordPieceTokenizer:
        return cls(Tokenizer.from_str(text))

    def to_json(self) -> str:
        """The whole tokenizer as tokenizer.json text (to store in a checkpoint, say)."""
        return self.tokenizer.to_str()

    def save(self, path: str | Path) -> None:
        """Write tokenizer.json atomically."""
        with atomic_path(Path(path)) as tmp:
            self.tokenizer.save(str(tmp))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Wordpiece ids of `text`, without [CLS] or [SEP]."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_lines(self, lines: Sequence[str]) -> np.ndarray:
        """One flat int64 array: the ids of each line followed by [SEP] (see `packing`)."""
        return encode_stream(self.tokenizer, lines, self.sep_id)

    def decode(self, ids: Sequence[int]) -> str:
        """The words of `ids` separated by spaces, wordpieces joined, special tokens dropped."""
        ids = [int(i) for i in ids]  # accepts tensors and numpy arrays
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def normalize(self, text: str) -> str:
        """`text` as `decode(encode(text))` gives it back when every character is known:
        normalised, with one space between words and around punctuation."""
        normalised = self.tokenizer.normalizer.normalize_str(text)
        words = self.tokenizer.pre_tokenizer.pre_tokenize_str(normalised)
        return " ".join(word for word, _ in words)


def cached_wordpiece(
    cache: TokenCache,
    name: str,
    source: Mapping[str, Any],
    lines: Callable[[], Iterable[str]],
    vocab_size: int,
    whole_words: Sequence[str] = (),
    tokenizer_path: str | Path | None = None,
) -> WordPieceTokenizer:
    """The tokenizer trained on `lines()` (called only on a cache miss), cached under `name`;
    or, given `tokenizer_path`, the tokenizer in that file (a checkpoint's, so that ids mean the
    same words), with nothing trained.

    `source` identifies the training text (file sha256s, a seed, a line limit): the entry is
    reused until it, the vocabulary size, the settings or the tokenizers release change.
    """
    if tokenizer_path is not None:
        return WordPieceTokenizer.from_file(tokenizer_path)
    if vocab_size <= len(SPECIAL_TOKENS) + len(whole_words):
        raise ValueError(
            f"data.wordpiece_vocab_size={vocab_size} must exceed the {len(SPECIAL_TOKENS)} "
            "special tokens"
        )
    key = {
        "source": dict(source),
        "vocab_size": vocab_size,
        "whole_words": list(whole_words),
        "settings": SETTINGS,
        # WordPiece training may change between tokenizers releases: retrain after an upgrade.
        "tokenizers": tokenizers.__version__,
    }
    tokenizer = cache.tokenizer(
        name, key, lambda: train_wordpiece(lines(), vocab_size, whole_words)
    )
    return WordPieceTokenizer(tokenizer, cache.tokenizer_path(name, key))
