"""The architecture x task matrix: every supported pair trains, every other pair is refused at
config time, the README's table says the same, and the fair-comparison multiruns complete."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from hydra.utils import get_class

from attnlab import run as build
from attnlab.run import ConfigError, model_options
from attnlab.run.train import train
from tests.conftest import ROOT, compose_config, run_cli
from tests.test_configs import options, task_of_data

SIZES = {
    "encdec": ["model.n_encoder_layers=1", "model.n_decoder_layers=1"],
    "gpt": ["model.n_layers=2"],
    "bert": ["model.n_layers=2"],
}
DATA = {
    "reverse": ["data.num_train=256", "data.num_val=64", "data.num_test=64", "data.max_len=8"],
    "multi30k": ["data.max_lines=300", "data.bpe_vocab_size=800", "data.max_tokens=512"],
    "sst2": ["data.max_len=64"],
    "toy_lm": ["data.block_size=32"],
    "toy_mlm": [],
}
QUICK = [
    "model.d_model=32",
    "model.n_heads=2",
    "model.d_ff=64",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.accelerator=cpu",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "print_config=false",
]
# What each task's run must report on the test set.
TEST_METRICS = {
    "seq2seq": ("test/loss", "test/bleu", "test/exact_match"),
    "classification": ("test/loss", "test/acc", "test/f1"),
    "causal_lm": ("test/loss", "test/ppl"),
    "masked_lm": ("test/loss", "test/acc"),
}
SUPPORTED_RUNS = [
    ("encdec", "reverse", []),
    ("gpt", "reverse", []),
    ("gpt", "reverse", ["model.prefix_attention=full", "task.beam_size=2"]),
    ("gpt", "multi30k", ["task.beam_size=2"]),
    ("bert", "sst2", []),
    ("gpt", "sst2", []),
    ("gpt", "sst2", ["model.pooling=mean"]),
    ("encdec", "sst2", ["model.pooling=mean"]),
    ("encdec", "sst2", ["model.pooling=decoder"]),
    ("gpt", "toy_lm", []),
    ("bert", "toy_mlm", []),
]


def run_id(case: tuple[str, str, list[str]]) -> str:
    model, data, extra = case
    return "-".join([model, data, *(e.split("=")[-1] for e in extra)])


@pytest.mark.parametrize("case", SUPPORTED_RUNS, ids=[run_id(c) for c in SUPPORTED_RUNS])
def test_supported_pair_trains_and_reports_comparable_numbers(
    tmp_path: Path, case: tuple[str, str, list[str]]
) -> None:
    model, data, extra = case
    overrides = [f"model={model}", f"data={data}", *QUICK, *SIZES[model], *DATA[data], *extra]
    result = train(compose_config(tmp_path, overrides))
    task = task_of_data(data)
    for name in TEST_METRICS[task]:
        assert math.isfinite(result["metrics"][name]), name
    assert result["global_step"] == 3
    # What a fair comparison needs, in metrics.json as written.
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["parameters"]["embedding"] > 0 and written["parameters"]["non_embedding"] > 0
    assert written["flops_per_token"] > 6 * written["parameters"]["non_embedding"] * 0.5
    assert written["tokens_seen"] > 0 and written["wall_time_s"] > 0


def pair_cases() -> list[tuple[str, str]]:
    """Every (model, data) option pair whose task the model does not support."""
    return [
        (model, data)
        for model, network in model_options().items()
        for data in options("data")
        if task_of_data(data) not in network.supported_tasks
    ]


@pytest.mark.parametrize(("model", "data"), pair_cases(), ids=lambda v: v)
def test_unsupported_pair_fails_at_config_time_naming_pair_and_choices(
    tmp_path: Path, model: str, data: str
) -> None:
    cfg = compose_config(tmp_path, [f"model={model}", f"data={data}"])
    task = get_class(cfg.task._target_).name
    able = [m for m, network in model_options().items() if task in network.supported_tasks]
    with pytest.raises(ConfigError) as error:
        build.check_compatibility(cfg)
    message = str(error.value)
    assert f"model={model} cannot do task '{task}' of data={data}" in message
    assert f"choose model= one of {able}" in message


def test_the_unsupported_pairs_are_exactly_the_issues() -> None:
    """Seq2seq: encoder-decoder and prefix LM; classification: all three; causal LM:
    decoder-only; masked LM: encoder-only. Everything else is refused."""
    refused = {(model, task_of_data(data)) for model, data in pair_cases()}
    assert refused == {
        ("bert", "seq2seq"),
        ("bert", "causal_lm"),
        ("encdec", "causal_lm"),
        ("encdec", "masked_lm"),
        ("gpt", "masked_lm"),
    }


def cells_of(row: str) -> list[str]:
    """A Markdown table row's cells; `\\|` inside a cell is an escaped pipe."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def readme_matrix() -> dict[str, set[str]]:
    """The README's architecture x task table: model option -> tasks marked ✓."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Architectures and tasks", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = cells_of(rows[0])
    tasks = {"seq2seq": "seq2seq", "causal LM": "causal_lm", "masked LM": "masked_lm"}
    tasks["classification"] = "classification"
    columns = [next((t for k, t in tasks.items() if cell.startswith(k)), None) for cell in header]
    matrix = {}
    for row in rows[2:]:
        cells = cells_of(row)
        model = re.search(r"`model=(\w+)`", cells[0]).group(1)
        matrix[model] = {columns[i] for i, cell in enumerate(cells) if cell.startswith("✓")}
    return matrix


def test_readme_matrix_matches_what_the_networks_support() -> None:
    expected = {name: set(network.supported_tasks) for name, network in model_options().items()}
    assert readme_matrix() == expected


def test_prefix_lm_needs_one_vocabulary_and_room_for_both_sides(tmp_path: Path) -> None:
    base = ["model=gpt", "data=multi30k", *DATA["multi30k"]]
    cfg = compose_config(tmp_path, [*base, "data.vocab=separate"])
    with pytest.raises(ConfigError, match=r"one vocabulary.*set data\.vocab=joint"):
        build.build_module(cfg, build.build_datamodule(cfg))
    cfg = compose_config(tmp_path, [*base, "model.max_len=100"])
    with pytest.raises(ConfigError, match=r"model\.max_len=100 is too short.*model\.max_len=256"):
        build.build_module(cfg, build.build_datamodule(cfg))


def compare_multirun(tmp_path: Path, experiment: str, models: str, extra: list[str]) -> list[dict]:
    sweep = tmp_path / "sweep"
    run_cli(
        "attnlab-train",
        "-m",
        f"experiment={experiment}",
        f"model={models}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "callbacks.rich_progress_bar=null",
        "print_config=false",
        *extra,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        timeout=900,
    )
    runs = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    report = run_cli("attnlab-compare", str(sweep), "--out", str(tmp_path / "report"), cwd=tmp_path)
    for model in models.split(","):
        assert f"model={model}" in report.stdout
    return runs


@pytest.mark.slow
def test_compare_sst2_multirun_over_the_three_architectures(tmp_path: Path) -> None:
    runs = compare_multirun(tmp_path, "compare_sst2", "encdec,gpt,bert", [])
    assert sorted(run["choices"]["model"] for run in runs) == ["bert", "encdec", "gpt"]
    for run in runs:
        assert run["status"] == "done" and math.isfinite(run["metrics"]["test/acc"])
    sizes = [run["parameters"]["non_embedding"] for run in runs]
    assert max(sizes) / min(sizes) < 1.10  # matched within 10% (8% by design)


@pytest.mark.slow
def test_compare_seq2seq_multirun_encoder_decoder_vs_prefix_lm(tmp_path: Path) -> None:
    runs = compare_multirun(tmp_path, "compare_seq2seq", "encdec,gpt", ["data.num_train=512"])
    assert sorted(run["choices"]["model"] for run in runs) == ["encdec", "gpt"]
    for run in runs:
        assert math.isfinite(run["metrics"]["test/bleu"])
    sizes = [run["parameters"]["non_embedding"] for run in runs]
    assert max(sizes) / min(sizes) < 1.01  # 3 + 3 layers vs 7: the same weights
