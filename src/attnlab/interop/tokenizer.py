"""attnlab's tokenizers as the files transformers' AutoTokenizer loads: tokenizer.json (a
`tokenizers` pipeline, which every attnlab tokenizer but the character one already is) and
tokenizer_config.json (its special tokens).

What travels: WordPiece (BERT data: [CLS] text [SEP] as `tokenizer(text)` gives it), the
tokenizer of `attnlab-prepare` shards, the word and BPE tokenizers of text files (one line at
a time: attnlab turns each newline into <eos>), characters (exactly). Synthetic data (toy_lm)
has no text tokenizer: nothing is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

from attnlab.data.tokenizers.char import CharVocab
from attnlab.data.tokenizers.line import LineTokenizer
from attnlab.data.tokenizers.wordpiece import WordPieceTokenizer

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"


@dataclass
class HFTokenizer:
    """A `tokenizers` pipeline and its special tokens by transformers' role names."""

    tokenizer: Tokenizer
    special_tokens: dict[str, str] = field(default_factory=dict)
    note: str = ""  # how it differs from attnlab's, if it does

    def save(self, directory: Path, max_len: int) -> None:
        self.tokenizer.save(str(directory / TOKENIZER_FILE))
        config = {
            # The generic fast tokenizer: reads tokenizer.json as it is.
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": max_len,
            **self.special_tokens,
        }
        (directory / TOKENIZER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def char_tokenizer(vocab: CharVocab) -> Tokenizer:
    """CharVocab as a pipeline: every character its own piece, decoded by concatenation."""
    tokenizer = Tokenizer(models.WordLevel({c: i for i, c in enumerate(vocab.chars)}))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    return tokenizer


WORDPIECE_SPECIALS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


def hf_tokenizer(datamodule: Any) -> HFTokenizer | None:
    """The tokenizer of a run's data as an HFTokenizer (None for synthetic ids)."""
    owner = getattr(datamodule, "tokenizer", None)
    if owner is None:
        encode = getattr(datamodule.spec, "encode", None)
        owner = getattr(encode, "__self__", None)  # the tokenizer whose method it is
    if isinstance(owner, WordPieceTokenizer):
        return HFTokenizer(
            Tokenizer.from_str(owner.to_json()),
            dict(WORDPIECE_SPECIALS),
            "text that reads \"[SEP]\" is attnlab's five characters but transformers' token",
        )
    if isinstance(owner, LineTokenizer):
        specials = {"eos_token": owner.tokenizer.id_to_token(owner.eos_id)}
        if owner.tokenizer.token_to_id("<unk>") is not None:
            specials["unk_token"] = "<unk>"
        note = "one line at a time: attnlab encodes each newline as <eos>"
        return HFTokenizer(Tokenizer.from_str(owner.tokenizer.to_str()), specials, note)
    if isinstance(owner, CharVocab):
        return HFTokenizer(char_tokenizer(owner))
    shards = getattr(datamodule, "path", None)  # attnlab-prepare's shards keep their tokenizer
    if shards is not None and (Path(shards) / TOKENIZER_FILE).is_file():
        tokenizer = Tokenizer.from_file(str(Path(shards) / TOKENIZER_FILE))
        eos = datamodule.spec.eos_id
        specials = {} if eos is None else {"eos_token": tokenizer.id_to_token(eos)}
        return HFTokenizer(tokenizer, specials)
    return None
