"""The generic local-files sources: a new dataset needs a config, not Python code."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from attnlab.data import CausalLMDataModule, MaskedLMDataModule, MissingDataError
from attnlab.data.sources import LabelledFiles, LineTokens, LocalText
from attnlab.data.sources.toy_text import toy_sentences
from attnlab.run.train import train
from tests.conftest import compose_config

SMALL_BERT = [
    "model=bert",
    "model.d_model=32",
    "model.n_heads=2",
    "model.n_layers=1",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "print_config=false",
]


def write_reviews(rng: np.random.Generator, count: int) -> list[tuple[str, str]]:
    """A made-up sentiment dataset: the label is the word the sentence ends with."""
    words = ["good", "bad"]
    rows = []
    for text in toy_sentences(count, int(rng.integers(1 << 30))):
        label = words[int(rng.integers(2))]
        rows.append(
            (f"{text.removesuffix(' .')} and {label} .", "pos" if label == "good" else "neg")
        )
    return rows


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("text\tsentiment\n" + "".join(f"{t}\t{s}\n" for t, s in rows))


def test_new_tsv_classification_dataset_trains_from_config_alone(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_tsv(tmp_path / "reviews" / "train.tsv", write_reviews(rng, 400))
    write_tsv(tmp_path / "reviews" / "test.tsv", write_reviews(rng, 64))
    overrides = [
        "data=tsv_classification",
        *SMALL_BERT,
        f"data.source.data_dir={tmp_path}",
        "data.source.train=reviews/train.tsv",
        "data.source.test=reviews/test.tsv",
        "data.source.name=reviews",
        "data.source.text_column=text",
        "data.source.label_column=sentiment",
        "data.source.val_size=0.25",
        "data.wordpiece_vocab_size=120",
        "data.max_len=32",
        "data.batch_size=16",
    ]
    result = train(compose_config(tmp_path / "run", overrides))
    metrics = result["metrics"]
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["val/loss"])
    assert 0.0 <= metrics["test/acc"] <= 1.0
    assert result["global_step"] == -(-300 // 16)  # 400 less a quarter for val, one epoch


@pytest.mark.parametrize("kind", ["tsv", "csv", "jsonl"])
def test_labelled_files_read_every_format_alike(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(1)
    rows = write_reviews(rng, 30)
    path = tmp_path / f"data.{kind}.gz"
    if kind == "jsonl":
        text = "".join(json.dumps({"text": t, "sentiment": s}) + "\n" for t, s in rows)
    else:
        sep = "\t" if kind == "tsv" else ","
        text = f"text{sep}sentiment\n" + "".join(f'"{t}"{sep}{s}\n' for t, s in rows)
    path.write_bytes(gzip.compress(text.encode()))
    source = LabelledFiles(
        tmp_path, f"data.{kind}", f"data.{kind}", text_column="text", label_column="sentiment"
    )
    sentences, labels = source.read(source.path(f"data.{kind}"))
    quote = '"' if kind == "tsv" else ""  # TSV keeps quotes as text, as GLUE's files need
    assert sentences == [f"{quote}{t}{quote}" for t, _ in rows]
    assert labels.tolist() == [["neg", "pos"].index(s) for _, s in rows]
    assert source.num_classes == 2
    train, val = source.indices("train", 30), source.indices("val", 30)
    assert len(val) == 3 and set(train).isdisjoint(val) and len(train) + len(val) == 30


def test_local_text_globs_gz_and_names_missing_files(tmp_path: Path) -> None:
    lines = toy_sentences(300, 5)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "part1.txt").write_text("\n".join(lines[:100]) + "\n")
    (tmp_path / "a" / "part2.txt.gz").write_bytes(gzip.compress("\n".join(lines[100:200]).encode()))
    (tmp_path / "val.txt").write_text("\n".join(lines[200:]) + "\n")
    text = LocalText("a/part*", "val.txt", data_dir=tmp_path)
    assert text.lines("train") == lines[:200]  # sorted matches, laid end to end
    assert text.lines("test") == text.lines("val") == lines[200:] and text.test_is_val
    with pytest.raises(MissingDataError, match="nothing"):
        LocalText("nothing*.txt", "val.txt", data_dir=tmp_path).lines("train")


@pytest.mark.parametrize("tokenizer", ["char", "word", "bpe"])
def test_local_text_feeds_causal_and_masked_lm(tmp_path: Path, tokenizer: str) -> None:
    lines = toy_sentences(400, 7)
    for name, part in (("train", lines[:300]), ("val", lines[300:350]), ("test", lines[350:])):
        (tmp_path / f"{name}.txt").write_text("\n".join(part) + "\n")
    text = LocalText("train.txt", "val.txt", "test.txt", data_dir=tmp_path)
    source = LineTokens(text, tmp_path / "cache", tokenizer, bpe_vocab_size=300)
    lm = CausalLMDataModule(block_size=16, batch_size=4, train_samples_per_epoch=8, source=source)
    splits = lm.corpus.splits
    assert lm.spec.decode(splits["val"]) == "\n".join(lines[300:350]) + "\n"
    lm.setup()
    batch = next(iter(lm.train_dataloader()))
    assert batch["input_ids"].shape == batch["labels"].shape == (4, 16)
    assert (batch["input_ids"][:, 1:] == batch["labels"][:, :-1]).all()
    mlm = MaskedLMDataModule(text, cache_dir=tmp_path / "cache", wordpiece_vocab_size=100)
    mlm.setup()
    assert mlm.spec.vocab_size <= 100 and len(mlm.datasets["test"]) > 0
