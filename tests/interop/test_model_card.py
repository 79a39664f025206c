"""attnlab-export's model card (README.md: what was trained, on what, by which command, with
which results and versions), generation_config.json and attnlab_config.yaml; the folder
still loads in transformers with attnlab's logits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from attnlab import run as build
from attnlab.run.checkpoints import load_run_config
from attnlab.run.export import export
from tests.conftest import ROOT, run_cli
from tests.interop.conftest import transformers

FIXTURES = ROOT / "tests" / "fixtures" / "checkpoints"
TOL = dict(atol=1e-5, rtol=1e-5)


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def fake_run(folder: Path, checkpoint: Path, overrides: list[str], summary: dict) -> Path:
    """A run folder as attnlab-train leaves one (the parts the card reads)."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / ".hydra").mkdir()
    shutil.copy(checkpoint, folder / "checkpoints" / "best.ckpt")
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / "metrics.json").write_text(json.dumps(summary))
    return folder / "checkpoints" / "best.ckpt"


def test_the_card_says_what_the_run_folder_records(tmp_path: Path) -> None:
    overrides = ["data=toy_lm", "model=gpt", "model.d_model=32", "seed=7"]
    summary = {
        "metrics": {"val/loss": 2.5, "test/loss": 2.6, "lm_eval/mc/acc": 0.5, "train/lr": 1e-3},
        "parameters": {"total": 12345, "non_embedding": 9876},
        "tokens_seen": 1_048_576,
        "global_step": 512,
        "wall_time_s": 61.5,
        "choices": {"model": "gpt", "data": "toy_lm"},
    }
    ckpt = fake_run(tmp_path / "my_run", FIXTURES / "gpt.ckpt", overrides, summary)
    out, _ = export(str(ckpt), tmp_path / "my-gpt", license="apache-2.0")
    card = (out / "README.md").read_text()
    meta = front_matter(card)
    assert meta["license"] == "apache-2.0" and meta["pipeline_tag"] == "text-generation"
    assert meta["library_name"] == "transformers" and "attnlab" in meta["tags"]
    assert card.count("\n# my-gpt\n") == 1 and "GPT2LMHeadModel" in card
    assert "`attnlab-train data=toy_lm model=gpt model.d_model=32 seed=7`" in card
    assert "my_run/checkpoints/best.ckpt" in card and str(tmp_path) not in card  # no local path
    rows = ["| parameters | 12345 |", "| parameters (non-embedding) | 9876 |"]
    rows += ["| tokens seen | 1,048,576 |", "| optimiser steps | 512 |", "| data option | toy_lm |"]
    assert [row for row in rows if row not in card] == []
    assert "| model.d_model | 32 |" in card and "| model.pos | learned |" in card
    assert "| `val/loss` | 2.5 |" in card and "| `lm_eval/mc/acc` | 0.5 |" in card
    assert "train/lr" not in card  # what a comparison shows, not every logged scalar
    assert f"| torch | {torch.__version__} |" in card and "| attnlab | " in card
    assert "No tokenizer" in card  # toy_lm: token ids

    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["max_length"] == 16 and generation["do_sample"] is True  # positions
    assert generation["temperature"] == 0.8 and generation["top_k"] == 200  # attnlab-generate's
    saved = OmegaConf.load(out / "attnlab_config.yaml")
    assert saved == load_run_config(str(ckpt))

    ref = transformers.AutoModelForCausalLM.from_pretrained(out).eval()  # the card changes nothing
    ours = build.load_trained_module(str(ckpt))[2].network.eval()
    ids = torch.randint(ours.vocab_size, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(ref(ids).logits, ours(ids), **TOL)


def test_a_checkpoint_without_its_folder_gets_a_card_that_says_so(tmp_path: Path) -> None:
    out, _ = export(str(FIXTURES / "bert.ckpt"), tmp_path / "bert")
    card = (out / "README.md").read_text()
    assert front_matter(card)["pipeline_tag"] == "fill-mask"
    assert front_matter(card)["license"] == "other"
    assert "Trained by: not recorded" in card and "Final metrics: not recorded" in card
    assert 'AutoTokenizer.from_pretrained("bert")' in card
    generation = out / "generation_config.json"  # transformers 4 writes a default one for BERT
    assert not generation.exists() or "do_sample" not in json.loads(generation.read_text())


@pytest.mark.slow  # a training run and an export, each a process
def test_export_of_a_trained_run_generates_with_its_config(tmp_path: Path) -> None:
    for split in ("train", "val", "test"):
        (tmp_path / f"{split}.txt").write_text("the cat sat on the mat .\na dog ran .\n" * 40)
    overrides = [
        "model=gpt",
        "data=text_files",
        *(f"data.source.text.{s}={tmp_path / f'{s}.txt'}" for s in ("train", "val", "test")),
        "data.block_size=16",
        "data.batch_size=4",
        "data.train_samples_per_epoch=64",
        "model.d_model=16",
        "model.n_heads=2",
        "model.n_layers=1",
        "trainer.accelerator=cpu",
        "trainer.max_steps=3",
        "callbacks.rich_progress_bar=null",
        "print_config=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    run_cli("attnlab-train", *overrides, cwd=tmp_path)
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    run_cli("attnlab-export", f"ckpt_path={ckpt}", f"out={tmp_path / 'hf'}", cwd=tmp_path)
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    card = (tmp_path / "hf" / "README.md").read_text()
    assert " ".join(["attnlab-train", *overrides[:2]]) in card
    assert f"| `test/loss` | {summary['metrics']['test/loss']:.6g} |" in card
    assert f"| tokens seen | {summary['tokens_seen']:,} |" in card

    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    eos = tokenizer.convert_tokens_to_ids("<eos>")
    assert model.generation_config.eos_token_id == eos == model.generation_config.pad_token_id
    ids = tokenizer("the cat", return_tensors="pt").input_ids
    out = model.generate(ids, do_sample=False)  # up to the positions it has: max_length 16
    assert out.shape[1] <= 16 and (out.shape[1] == 16 or out[0, -1] == eos)
