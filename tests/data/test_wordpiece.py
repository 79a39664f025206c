"""WordPiece: fixed special ids, round trips, a stable fingerprint, cached until its key changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from attnlab.data import TokenCache, WordPieceTokenizer
from attnlab.data.sources.toy_text import toy_sentences
from attnlab.data.tokenizers.wordpiece import SEP_ID, cached_wordpiece, train_wordpiece

TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "A lazy dog sleeps, and the quick foxes run away!",
    "Dogs and foxes are animals; the fox is quicker than the dog.",
] * 50 + toy_sentences(500, seed=0)


class CountingLines:
    """The training lines, counting how often they were asked for (= how often it trained)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> list[str]:
        self.calls += 1
        return TEXT


def cached(cache_dir: Path, vocab_size: int, lines: CountingLines) -> WordPieceTokenizer:
    return cached_wordpiece(
        TokenCache(cache_dir), "corpus/wordpiece", {"seed": 0}, lines, vocab_size
    )


@pytest.fixture(scope="module")
def tokenizer() -> WordPieceTokenizer:
    return WordPieceTokenizer(train_wordpiece(TEXT, vocab_size=150))


def test_special_tokens_have_fixed_ids(tokenizer: WordPieceTokenizer) -> None:
    specials = [tokenizer.tokenizer.id_to_token(i) for i in range(5)]
    assert specials == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id) == (0, 1, 2)
    assert (tokenizer.sep_id, tokenizer.mask_id, tokenizer.special_ids) == (3, 4, (0, 1, 2, 3, 4))
    assert tokenizer.vocab_size == 150


def test_decode_gives_back_the_normalised_text(tokenizer: WordPieceTokenizer) -> None:
    text = "The quick brown Fox, the LAZY dogs!"
    ids = tokenizer.encode(text)
    assert min(ids) >= 5  # no specials added, none unknown
    assert tokenizer.normalize(text) == "the quick brown fox , the lazy dogs !"
    assert tokenizer.decode(ids) == tokenizer.normalize(text)
    assert any(tokenizer.tokenizer.id_to_token(i).startswith("##") for i in ids)  # wordpieces
    assert tokenizer.decode([2, *ids, 3, 0, 0]) == tokenizer.normalize(text)  # specials dropped
    for sentence in toy_sentences(20, seed=1):
        assert tokenizer.decode(tokenizer.encode(sentence)) == sentence


def test_special_token_text_is_plain_text(tokenizer: WordPieceTokenizer) -> None:
    assert not set(tokenizer.encode("a [MASK] and a [SEP]")) & set(tokenizer.special_ids[2:])
    stream = tokenizer.encode_lines(["the dog", "", "the fox"])
    assert (stream == SEP_ID).sum() == 3 and stream[-1] == SEP_ID


def test_whole_words_stay_one_token() -> None:
    tokenizer = WordPieceTokenizer(train_wordpiece(TEXT, vocab_size=150, whole_words=["<unk>"]))
    assert tokenizer.vocab_size == 150
    ids = tokenizer.encode("the <unk> dog")
    assert len(ids) == 3 and tokenizer.decode(ids) == "the <unk> dog"


def test_fingerprint_survives_json_and_files(tokenizer: WordPieceTokenizer, tmp_path: Path) -> None:
    tokenizer.save(tmp_path / "tokenizer.json")
    loaded = WordPieceTokenizer.from_file(tmp_path / "tokenizer.json")
    assert loaded.path == tmp_path / "tokenizer.json"
    assert loaded.fingerprint == tokenizer.fingerprint
    assert WordPieceTokenizer.from_json(tokenizer.to_json()).fingerprint == tokenizer.fingerprint
    assert loaded.encode("[SEP] fox") == tokenizer.encode("[SEP] fox")  # set again on load
    other = WordPieceTokenizer(train_wordpiece(TEXT, vocab_size=120))
    assert other.fingerprint != tokenizer.fingerprint


def test_trained_once_then_reused_and_retrained_for_another_size(tmp_path: Path) -> None:
    lines = CountingLines()
    first = cached(tmp_path, 150, lines)
    assert first.path is not None and first.path.parent == tmp_path / "corpus"
    mtime = first.path.stat().st_mtime_ns
    again = cached(tmp_path, 150, lines)
    assert lines.calls == 1  # not retrained: the lines were not even read
    assert again.path == first.path and first.path.stat().st_mtime_ns == mtime
    assert again.fingerprint == first.fingerprint

    smaller = cached(tmp_path, 120, lines)
    assert lines.calls == 2 and smaller.vocab_size == 120
    assert smaller.fingerprint != first.fingerprint
    assert len(list((tmp_path / "corpus").glob("*.tokenizer.json"))) == 2  # 150's entry kept


def test_a_tokenizer_without_the_specials_is_refused(tmp_path: Path) -> None:
    foreign = Tokenizer(models.WordPiece({"[UNK]": 0, "[PAD]": 1, "a": 2}, unk_token="[UNK]"))
    foreign.save(str(tmp_path / "foreign.json"))
    with pytest.raises(
        ValueError, match=r"lacks the special tokens \['\[CLS\]', '\[SEP\]', '\[MASK\]'\]"
    ):
        WordPieceTokenizer.from_file(tmp_path / "foreign.json")
    with pytest.raises(FileNotFoundError, match="tokenizer_path="):
        WordPieceTokenizer.from_file(tmp_path / "missing.json")


def test_too_small_a_vocabulary_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.wordpiece_vocab_size=5 must exceed"):
        cached(tmp_path, 5, CountingLines())


def test_training_is_deterministic() -> None:
    # Without the workaround in train_wordpiece, Hugging Face's trainer gives this text
    # different vocabularies from run to run (huggingface/tokenizers#1794).
    fingerprints = {WordPieceTokenizer(train_wordpiece(TEXT, 150)).fingerprint for _ in range(5)}
    assert len(fingerprints) == 1


def test_special_tokens_keep_their_own_ids() -> None:
    """bert-base-uncased's layout: [PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103."""
    vocab = {f"[unused{i}]": i for i in range(1, 100)} | {"[PAD]": 0, "[UNK]": 100}
    vocab |= {"[CLS]": 101, "[SEP]": 102, "[MASK]": 103, "the": 104, "cat": 105}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece = WordPieceTokenizer(tokenizer)
    ids = (wordpiece.pad_id, wordpiece.unk_id, wordpiece.cls_id, wordpiece.sep_id)
    assert ids == (0, 100, 101, 102) and wordpiece.mask_id == 103
    assert wordpiece.special_ids == (0, 100, 101, 102, 103)
    assert wordpiece.encode("the dog cat") == [104, 100, 105]
    assert wordpiece.encode_lines(["the cat", "cat"]).tolist() == [104, 105, 102, 105, 102]
