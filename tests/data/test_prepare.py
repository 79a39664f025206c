"""attnlab-prepare: round trip, inputs, resume, atomicity, verify, bad input; the permutation."""

from __future__ import annotations

import gzip
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from attnlab.data.corpus import PrepareError, PrepareSettings, prepare
from attnlab.data.corpus import encoding as prep
from attnlab.data.corpus.tokenizer_training import char_tokenizer
from attnlab.data.loading.permutation import FeistelPermutation
from attnlab.data.loading.shards import TokenIndex
from attnlab.run.prepare import run
from attnlab.run.validation import ConfigError
from tests.conftest import compose_config, run_cli

WORDS = ["the", "cat", "sat", "on", "a", "mat", "über", "naïve", "dog", "ran", "!", "?"]


def corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 25))) for _ in range(n)]


def settings(tmp_path: Path, inputs, **extra) -> PrepareSettings:
    base = dict(out=str(tmp_path / "out"), input=inputs, tokenizer="char", workers=1)
    base |= dict(chunk_mb=2e-3, shard_mb=8e-3)  # a few KB: many chunks and shards
    return PrepareSettings(**(base | extra))


def documents_of(index: TokenIndex, split: str) -> list[str]:
    """Each document's text, read back from the shards through the saved tokenizer."""
    tokenizer = Tokenizer.from_file(str(index.root / "tokenizer.json"))
    docs = []
    for shard, tokens in zip(index.splits[split], index.open(split), strict=True):
        starts = np.load(index.root / shard.docs)
        assert (tokens[starts] == index.eos_id).all()  # EOS precedes every document
        assert (tokens == index.eos_id).sum() == len(starts) == shard.documents
        for begin, end in zip(starts, [*starts[1:], len(tokens)], strict=True):
            docs.append(tokenizer.decode(tokens[begin + 1 : end].tolist()))
    return docs


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_round_trip_and_document_boundaries(tmp_path: Path, tokenizer: str) -> None:
    lines = corpus(800, seed=random.randrange(1 << 30))
    path = write_lines(tmp_path / "a.txt", [*lines[:200], "", *lines[200:]])  # empty: skipped
    index = prepare(settings(tmp_path, str(path), tokenizer=tokenizer, vocab_size=300))
    assert len(index.splits["train"]) > 2  # several shards
    buckets = [i % 1000 for i in range(len(lines))]
    expected = {
        "val": [d for d, b in zip(lines, buckets, strict=True) if b < 5],
        "test": [d for d, b in zip(lines, buckets, strict=True) if 5 <= b < 10],
        "train": [d for d, b in zip(lines, buckets, strict=True) if b >= 10],
    }
    for split, docs in expected.items():
        got = documents_of(index, split)
        if tokenizer == "char":
            assert got == docs
        else:  # byte-level BPE: lossless
            assert "".join(got) == "".join(docs) and len(got) == len(docs)
    assert index.dtype == np.uint16 and index.verify() == []


def test_an_empty_chunk_adds_no_document() -> None:
    """The last chunk of a split can be empty (the text ended on a chunk boundary): it used to
    add a document start at the shard's end, past its last token (7 of 150 random corpora)."""
    tokenizer = char_tokenizer(["ab"])
    prep._init_worker(tokenizer.to_str(), 0, "uint16")
    data, starts = prep.encode_chunk([])
    assert data == b"" and len(starts) == 0
    data, starts = prep.encode_chunk(["ab", "b"])  # <eos>=0, a=2, b=3
    assert np.frombuffer(data, np.uint16).tolist() == [0, 2, 3, 0, 3]
    assert starts.tolist() == [0, 3]


def test_uint32_when_the_vocabulary_exceeds_uint16(tmp_path: Path) -> None:
    # A user's tokenizer.json with 70,000 tokens (a word-level vocabulary).
    from tokenizers import models, pre_tokenizers

    vocab = {"<eos>": 0, "<unk>": 1} | {f"w{i}": i + 2 for i in range(70_000)}
    big = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    big.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    big.save(str(tmp_path / "big.json"))
    path = write_lines(tmp_path / "a.txt", ["w69999 w5 w1", "w60000 nope"])
    index = prepare(
        settings(
            tmp_path,
            str(path),
            tokenizer="file",
            tokenizer_path=str(tmp_path / "big.json"),
            val_fraction=0,
            test_fraction=0,
        )
    )
    assert index.dtype == np.uint32
    (tokens,) = index.open("train")
    assert tokens.tolist() == [0, 70001, 7, 3, 0, 60002, 1]


def test_jsonl_gz_and_glob_inputs(tmp_path: Path) -> None:
    lines = corpus(60, seed=random.randrange(1 << 30))
    (tmp_path / "in").mkdir()
    write_lines(tmp_path / "in" / "a.txt", lines[:20])
    with gzip.open(tmp_path / "in" / "b.txt.gz", "wt", encoding="utf-8") as file:
        file.writelines(line + "\n" for line in lines[20:40])
    with gzip.open(tmp_path / "in" / "c.jsonl.gz", "wt", encoding="utf-8") as file:
        for line in lines[40:]:
            file.write(json.dumps({"body": line, "id": 1}) + "\n")
    s = settings(tmp_path, str(tmp_path / "in" / "*"), text_field="body")
    s.val_fraction = s.test_fraction = 0
    index = prepare(s)
    assert documents_of(index, "train") == lines


def test_separate_val_and_test_inputs(tmp_path: Path) -> None:
    train, val, test = corpus(50, 1), corpus(7, 2), corpus(5, 3)
    s = settings(
        tmp_path,
        [str(write_lines(tmp_path / "t.txt", train))],
        val_input=str(write_lines(tmp_path / "v.txt", val)),
        test_input=str(write_lines(tmp_path / "s.txt", test)),
    )
    index = prepare(s)
    assert documents_of(index, "train") == train
    assert documents_of(index, "val") == val and documents_of(index, "test") == test


def _all_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if not p.name.startswith(".")}


def test_resume_after_an_interruption_gives_the_same_bytes(tmp_path: Path, monkeypatch) -> None:
    path = write_lines(tmp_path / "a.txt", corpus(600, seed=random.randrange(1 << 30)))
    whole = prepare(settings(tmp_path / "whole", str(path)))
    assert len(whole.splits["train"]) >= 4
    expected = _all_bytes(whole.root)

    calls = {"n": 0}
    real = prep.encode_chunk

    def dies_part_way(docs):
        calls["n"] += 1
        if calls["n"] == 9:
            raise KeyboardInterrupt  # Ctrl-C in the middle of a shard
        return real(docs)

    monkeypatch.setattr(prep, "encode_chunk", dies_part_way)
    s = settings(tmp_path / "cut", str(path))
    with pytest.raises(KeyboardInterrupt):
        prepare(s)
    root = Path(s.out)
    assert not (root / "index.json").exists()
    assert not list(root.glob(".*.tmp"))  # the open shard's temporary file was removed
    kept = sorted(p.name for p in root.glob("train-*.json"))
    assert kept  # some shards were finished ...
    monkeypatch.setattr(prep, "encode_chunk", real)
    encoded = {"n": 0}

    def counting(docs):
        encoded["n"] += 1
        return real(docs)

    monkeypatch.setattr(prep, "encode_chunk", counting)
    index = prepare(s)
    assert encoded["n"] < calls["n"] + 50  # ... and not encoded again (skipped)
    assert _all_bytes(index.root) == expected | {"index.json": _all_bytes(index.root)["index.json"]}
    strip = lambda b: {k: v for k, v in json.loads(b).items() if k != "settings"}  # noqa: E731
    assert strip(_all_bytes(index.root)["index.json"]) == strip(expected["index.json"])


def test_a_shard_killed_mid_write_is_not_kept(tmp_path: Path) -> None:
    """A partial shard (its temporary file, no marker) is redone, a truncated one too."""
    path = write_lines(tmp_path / "a.txt", corpus(300, seed=5))
    index = prepare(settings(tmp_path, str(path)))
    expected = _all_bytes(index.root)
    shard = index.root / index.splits["train"][1].file
    shard.write_bytes(shard.read_bytes()[:-6])  # truncated: cheap fingerprint differs
    (index.root / "index.json").unlink()
    (index.root / ".train-00002.bin.123.tmp").write_bytes(b"partial")
    prepare(settings(tmp_path, str(path)))
    assert _all_bytes(index.root) == expected
    assert not list(index.root.glob(".*.tmp"))


def test_parallel_workers_write_the_same_bytes(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.txt", corpus(300, seed=random.randrange(1 << 30)))
    one = _all_bytes(prepare(settings(tmp_path / "one", str(path))).root)
    two = _all_bytes(prepare(settings(tmp_path / "two", str(path), workers=2)).root)
    assert one == two


def test_verify_catches_a_corrupted_shard(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.txt", corpus(300, seed=7))
    index = prepare(settings(tmp_path, str(path)))
    assert index.verify() == []
    shard = index.root / index.splits["train"][0].file
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 1
    shard.write_bytes(bytes(data))
    problems = TokenIndex.load(index.root).verify()
    assert problems == [f"train: {shard.name} is corrupted (sha256 differs)"]
    cfg = compose_config(tmp_path, [f"out={index.root}", "verify=true"], config_name="prepare")
    with pytest.raises(ConfigError, match=f"verify=true: out=.*{shard.name} is corrupted"):
        run(cfg)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("input={tmp}/missing*.txt", "input='{tmp}/missing*.txt' matches no file"),
        ("tokenizer=sentencepiece", "tokenizer='sentencepiece' is not a tokenizer; choose one"),
        ("text_field=body", "text_field='body' is not in record 1 of {tmp}/a.jsonl"),
        ("input=hf:wikitext", "input=hf:wikitext needs the Hugging Face `datasets` package"),
        # issue 31: exit 0 with 0 tokens; a UnicodeDecodeError naming no file; FileExistsError
        ("input={tmp}/empty.txt", "input='{tmp}/empty.txt' is empty: there is no text to"),
        ("input={tmp}/binary.txt", "{tmp}/binary.txt is not UTF-8 text (byte 0xff); attnlab-"),
        ("out={tmp}/a.jsonl", "out={tmp}/a.jsonl is a file; give a directory for the shards"),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, override: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "hi", "id": 3}) + "\n")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "binary.txt").write_bytes(b"text\n\xff\xfe\x00binary\n")
    args = [f"input={tmp_path}/a.jsonl", f"out={tmp_path}/out", "workers=1", "tokenizer=char"]
    key = override.split("=")[0]
    args = [a for a in args if not a.startswith(key + "=")] + [override.format(tmp=tmp_path)]
    # `datasets` comes with lm-eval (the dev install): made missing here (find_spec -> None).
    monkeypatch.setitem(sys.modules, "datasets", None)
    cfg = compose_config(tmp_path, args, config_name="prepare")
    with pytest.raises(ConfigError) as error:
        run(cfg)
    assert "\n" not in str(error.value) and message.format(tmp=tmp_path) in str(error.value)
    if "text_field" not in override and "binary" not in override:  # these read the input
        assert not (tmp_path / "out").exists()  # refused before anything is written


@pytest.mark.slow
def test_the_cli_refuses_with_one_line(tmp_path: Path) -> None:
    out = run_cli(
        "attnlab-prepare", "input=nowhere/*.txt", f"out={tmp_path}/o", cwd=tmp_path, check=False
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "attnlab: input='nowhere/*.txt' matches no file; give a file, a glob ('corpus/*.txt'), "
        "a list of them, or hf:NAME"
    ]


def test_changed_settings_are_refused_on_resume(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.txt", corpus(20, 1))
    prepare(settings(tmp_path, str(path)))
    with pytest.raises(PrepareError, match=r"out=.* was prepared with other settings \(tokenizer"):
        prepare(settings(tmp_path, str(path), tokenizer="bpe"))


@pytest.mark.parametrize("n", [1, 2, 3, 17, 1000, 4097, 65_536, 100_003])
def test_feistel_is_a_permutation(n: int) -> None:
    key = random.randrange(1 << 30)
    perm = FeistelPermutation(n, key)
    values = perm[np.arange(n)]
    assert np.array_equal(np.sort(values), np.arange(n))
    assert list(perm.chunks(size=7))[: min(n, 50)] == values[:50].tolist()
    if n >= 1000:  # not the identity, and a different key gives a different order
        assert (values != np.arange(n)).mean() > 0.9
        assert not np.array_equal(FeistelPermutation(n, key + 1)[np.arange(n)], values)
