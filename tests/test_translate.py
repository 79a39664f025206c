"""A shrunk experiment=encdec_multi30k trains on a CPU; attnlab-translate reads its checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from attnlab import run as build
from attnlab.data.loading.download import read_lines
from attnlab.run.train import train
from tests.conftest import run_cli
from tests.data.conftest import require

# The experiment as CI can afford it: 64 sentence pairs, a tiny model, one short epoch.
SMOKE = [
    "experiment=encdec_multi30k",
    "data.max_lines=64",
    "data.bpe_vocab_size=500",
    "data.max_tokens=512",
    "model.d_model=32",
    "model.n_heads=2",
    "model.d_ff=64",
    "model.n_encoder_layers=1",
    "model.n_decoder_layers=1",
    "task.max_len_offset=8",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "print_config=false",
]


def test_multi30k_smoke_run_then_translate(train_config, tmp_path: Path) -> None:
    data = require("multi30k/train.de", "multi30k/val.en", "multi30k/test_2016_flickr.en")
    result = train(train_config(*SMOKE, base=[]))
    metrics = result["metrics"]
    for name in ("train/loss", "val/loss", "val/bleu", "test/bleu", "test/exact_match"):
        assert name in metrics, name
    # Hypotheses in corpus order, one a line, for val (each epoch) and test.
    val_lines = read_lines(tmp_path / "hypotheses" / "val_epoch0.txt")
    assert len(val_lines) == len(read_lines(data / "multi30k/val.en.gz")[:64])
    assert len(read_lines(tmp_path / "hypotheses" / "test.txt")) == 64
    checkpoint = torch.load(result["best_checkpoint"], map_location="cpu", weights_only=False)
    assert checkpoint["tokenizer"]["json"].startswith('{"format": "attnlab/translation-tokenizer')
    # A rebuilt run (attnlab-eval, attnlab-translate) reads text with the checkpoint's tokenizer.
    _, datamodule, _ = build.load_trained_module(result["best_checkpoint"])
    assert datamodule.tokenizer.fingerprint == checkpoint["tokenizer"]["fingerprint"]

    out = run_cli(
        "attnlab-translate",
        f"ckpt_path={result['best_checkpoint']}",
        "text=Ein Hund rennt im Park.",
        "beam_size=2",
        "length_penalty=0.8",
        cwd=tmp_path,
    )
    assert len(out.stdout.splitlines()) == 1
    listed = run_cli(
        "attnlab-translate",
        f"ckpt_path={result['best_checkpoint']}",
        "text=[Ein Hund.,Eine Katze.]",
        "beam_size=1",
        cwd=tmp_path,
    )
    assert len(listed.stdout.splitlines()) == 2


def test_a_decoder_only_prefix_lm_translates_too(train_config, tmp_path: Path) -> None:
    """model=gpt on Multi30k: trained as [source | target], decoded by the same beam search."""
    require("multi30k/train.de", "multi30k/val.en", "multi30k/test_2016_flickr.en")
    overrides = [
        "experiment=compare_seq2seq",
        "model=gpt",
        "data=multi30k",
        *(o for o in SMOKE if o.startswith(("data.", "trainer.", "callbacks.", "print_config"))),
        "model.d_model=32",
        "model.n_heads=2",
        "model.d_ff=64",
        "model.n_layers=2",
        "trainer.limit_train_batches=3",
    ]
    result = train(train_config(*overrides, base=[]))
    assert result["choices"]["model"] == "gpt" and "test/bleu" in result["metrics"]
    out = run_cli(
        "attnlab-translate",
        f"ckpt_path={result['best_checkpoint']}",
        "text=[Ein Hund rennt im Park.,Zwei Hunde spielen.]",
        "beam_size=3",
        cwd=tmp_path,
    )
    assert len(out.stdout.splitlines()) == 2
