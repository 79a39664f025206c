"""The tokenizer a corpus is prepared with: trained on the first `sample_mb` of its training
documents (BPE, WordPiece, one token per character) or read from a file; its end-of-text id."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

from attnlab.data.corpus.documents import split_documents
from attnlab.data.corpus.settings import MB, PrepareError, PrepareSettings

EOS_CANDIDATES = ("<eos>", "<|endoftext|>", "</s>", "[SEP]")


def char_tokenizer(sample: Iterable[str]) -> Tokenizer:
    """One token per character of the sample (sorted), `<eos>`=0 and `<unk>`=1 first."""
    chars = sorted(set(chain.from_iterable(sample)))
    vocab = {"<eos>": 0, "<unk>": 1} | {c: i + 2 for i, c in enumerate(chars)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens(["<eos>", "<unk>"])
    return tokenizer


def train_tokenizer(settings: PrepareSettings, sample: list[str]) -> Tokenizer:
    if settings.tokenizer == "file":
        assert settings.tokenizer_path is not None
        return Tokenizer.from_file(settings.tokenizer_path)
    if settings.tokenizer == "char":
        return char_tokenizer(sample)
    if settings.tokenizer == "bpe":
        from attnlab.data.tokenizers.line import train_bpe

        return train_bpe(sample, settings.vocab_size)
    from attnlab.data.tokenizers.wordpiece import train_wordpiece

    return train_wordpiece(sample, settings.vocab_size)


def eos_id_of(tokenizer: Tokenizer, eos_token: str | None) -> int:
    names = [eos_token] if eos_token else list(EOS_CANDIDATES)
    for name in names:
        token_id = tokenizer.token_to_id(name)
        if token_id is not None:
            return token_id
    key = f"eos_token={eos_token!r}" if eos_token else "eos_token=null"
    raise PrepareError(
        f"{key}: the tokenizer has none of {names}; name its end-of-text token with eos_token=..."
    )


def tokenizer_sample(settings: PrepareSettings) -> list[str]:
    """The first `sample_mb` of training documents: what BPE, WordPiece or char learn from."""
    budget, sample = settings.sample_mb * MB, []
    for split, doc in split_documents(settings):
        if split != "train":
            continue
        sample.append(doc)
        budget -= len(doc)
        if budget <= 0:
            break
    return sample
