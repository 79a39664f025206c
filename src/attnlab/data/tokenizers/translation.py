"""Subword tokenizers for translation: BPE over raw, cased text that decodes back to that text.

Words are split on spaces the SentencePiece way (Metaspace: each space becomes "▁" and starts a
word), so decoding puts the spaces back and `decode(encode(line)) == line` for raw text (a
leading space is the one thing lost). Characters the training text lacks fall back to their
UTF-8 bytes (`<0xNN>` tokens) instead of `<unk>`. The specials have fixed ids, `<pad>`=0
`<unk>`=1 `<s>`=2 `</s>`=3, and text that reads "</s>" is encoded as its characters.

A `TranslationTokenizer` holds one tokenizer for both languages (joint vocabulary) or one per
language (separate). It serialises to one JSON document, which checkpoints store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from attnlab.data.loading.atomic import atomic_path
from attnlab.data.loading.packing import encode_stream

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(len(SPECIAL_TOKENS))
NUM_BYTES = 256
FORMAT = "attnlab/translation-tokenizer/1"


def train_metaspace_bpe(lines: Iterable[str], vocab_size: int) -> Tokenizer:
    """BPE with `vocab_size` tokens in all: the specials, 256 byte tokens and the merges."""
    if vocab_size <= len(SPECIAL_TOKENS) + NUM_BYTES:
        raise ValueError(
            f"a BPE vocabulary of {vocab_size} leaves no room beyond the "
            f"{len(SPECIAL_TOKENS)} specials and {NUM_BYTES} byte tokens"
        )
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - NUM_BYTES,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer)
    # The trainer has no byte fallback: add the byte tokens and switch it on in the JSON.
    data = json.loads(tokenizer.to_str())
    vocab = data["model"]["vocab"]
    for byte in range(NUM_BYTES):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    data["model"]["byte_fallback"] = True
    data["decoder"] = {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, data["decoder"]]}
    return Tokenizer.from_str(json.dumps(data))


class TranslationTokenizer:
    """Source and target tokenizers (the same object for a joint vocabulary).

    `encode_source` gives the ids the encoder reads (tokens then `</s>`); `decode` turns target
    ids into text, specials dropped. `fingerprint` identifies both vocabularies.
    """

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def __init__(self, source: Tokenizer, target: Tokenizer | None = None) -> None:
        self.joint = target is None
        self.source = source
        self.target = source if target is None else target
        for side in {id(self.source): self.source, id(self.target): self.target}.values():
            found = [side.id_to_token(i) for i in range(len(SPECIAL_TOKENS))]
            if found != list(SPECIAL_TOKENS):
                raise ValueError(f"tokenizer has {found} at ids 0-3, needs {list(SPECIAL_TOKENS)}")
            side.encode_special_tokens = True  # not saved in the JSON: set on every load
        self.fingerprint = hashlib.sha256(self._canonical().encode("utf-8")).hexdigest()

    def _canonical(self) -> str:
        sides = [self.source] if self.joint else [self.source, self.target]
        # Sorted keys: the vocab map of tokenizer.json serialises in no fixed order.
        return json.dumps([json.loads(side.to_str()) for side in sides], sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TranslationTokenizer:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"not a translation tokenizer (format {data.get('format')!r})")
        target = data["target"]
        return cls(
            Tokenizer.from_str(data["source"]),
            None if target is None else Tokenizer.from_str(target),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> TranslationTokenizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer_path={path} does not exist (or is not a file)")
        return cls.from_json(path.read_text(encoding="utf-8"))

    def to_json(self) -> str:
        """Both tokenizers as one JSON document (what a checkpoint stores)."""
        target = None if self.joint else self.target.to_str()
        return json.dumps({"format": FORMAT, "source": self.source.to_str(), "target": target})

    def save(self, path: str | Path) -> None:
        with atomic_path(Path(path)) as tmp:
            tmp.write_text(self.to_json(), encoding="utf-8")

    @property
    def src_vocab_size(self) -> int:
        return self.source.get_vocab_size(with_added_tokens=True)

    @property
    def tgt_vocab_size(self) -> int:
        return self.target.get_vocab_size(with_added_tokens=True)

    def encode_source(self, text: str) -> list[int]:
        """What the encoder reads: the tokens of `text`, then `</s>`."""
        return [*self.source.encode(text, add_special_tokens=False).ids, EOS_ID]

    def decode(self, ids: Sequence[int]) -> str:
        """Target ids -> text, specials dropped."""
        return self.target.decode([int(i) for i in ids], skip_special_tokens=True)

    def decode_source(self, ids: Sequence[int]) -> str:
        return self.source.decode([int(i) for i in ids], skip_special_tokens=True)

    def encode_lines(self, lines: Sequence[str], side: str) -> np.ndarray:
        """One flat int64 array: the ids of each line followed by `</s>` (see `packing.Lines`)."""
        tokenizer = self.source if side == "source" else self.target
        return encode_stream(tokenizer, lines, EOS_ID)
