"""attnlab-compare's report on a synthetic sweep (no training): curves drawn at the right
steps with mean and min-max band over seeds, readable labels, a Markdown table that reads in
a 100-column terminal."""

from __future__ import annotations

import csv
import json
import random
import statistics
from pathlib import Path

import pytest

from attnlab.compare import compare, find_runs, variants
from attnlab.compare.plots import curves, readable
from attnlab.compare.tables import WIDTH

METRICS = ("val/loss", "val/acc", "val/bleu", "val/exact_match")
VARIANTS = ("model.pos=rope optimizer.lr=0.001", "model.pos=sinusoidal optimizer.lr=0.0003")


def write_run(path: Path, variant: str, seed: int, rng: random.Random) -> list[dict]:
    """A finished job folder as attnlab-train leaves it: overrides, metrics.json and the CSV
    logger's metrics.csv, whose `step` is the steps done before the logging batch."""
    (path / ".hydra").mkdir(parents=True)
    lines = [f"- {o}" for o in variant.split()] + [f"- seed={seed}"]
    (path / ".hydra" / "overrides.yaml").write_text("\n".join(lines) + "\n")
    rows = []
    for i, steps_done in enumerate((10, 20, 30)):  # validations after 10, 20, 30 steps
        values = {m: rng.uniform(0.5, 3.0) for m in METRICS}
        rows.append({"step": steps_done - 1, "progress/tokens_seen": 640.0 * (i + 1), **values})
    (path / "csv").mkdir()
    with (path / "csv" / "metrics.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["step", "progress/tokens_seen", *METRICS])
        writer.writeheader()
        writer.writerows(rows)
    final = {m: rows[-1][m] for m in METRICS}
    tests = {m.replace("val/", "test/"): rng.uniform(0.5, 3.0) for m in METRICS}
    result = {
        "status": "done",
        "optimized_metric": "val/loss",
        "metrics": {**final, **tests, "train/loss": 1.0},
        "parameters": {"total": 1_234_567, "non_embedding": 1_000_000},
        "flops_per_token": 7_407_402,
        "tokens_per_sec": rng.uniform(1e4, 5e4),
        "wall_time_s": rng.uniform(100, 900),
    }
    (path / "metrics.json").write_text(json.dumps(result))
    return rows


@pytest.fixture
def sweep(tmp_path: Path) -> tuple[Path, dict[str, list[list[dict]]]]:
    rng = random.Random()
    logged: dict[str, list[list[dict]]] = {v: [] for v in VARIANTS}
    job = 0
    for variant in VARIANTS:
        for seed in (1, 2, 3):
            logged[variant].append(write_run(tmp_path / "sweep" / str(job), variant, seed, rng))
            job += 1
    return tmp_path / "sweep", logged


def test_curves_are_drawn_at_steps_done_with_mean_and_range_over_seeds(sweep) -> None:
    sweep_dir, logged = sweep
    drawn = curves(variants(find_runs(sweep_dir)), "step", "val/loss")
    assert sorted(drawn) == sorted(VARIANTS)
    for variant, curve in drawn.items():
        assert curve.x == [10, 20, 30]  # not 9, 19, 29 as the CSV has them
        assert curve.seeds == 3
        for i in range(3):
            values = [rows[i]["val/loss"] for rows in logged[variant]]
            assert curve.mean[i] == pytest.approx(statistics.fmean(values))
            assert (curve.low[i], curve.high[i]) == (min(values), max(values))
    tokens = curves(variants(find_runs(sweep_dir)), "progress/tokens_seen", "val/loss")
    assert next(iter(tokens.values())).x == [640, 1280, 1920]  # other axes as logged


@pytest.mark.parametrize(
    ("metric", "label"),
    [
        ("val/loss", "validation loss"),
        ("val/acc", "validation accuracy"),
        ("test/exact_match", "test exact match"),
        ("val/bleu", "validation BLEU"),
        ("val/my_metric", "validation my metric"),
    ],
)
def test_metric_labels_are_readable(metric: str, label: str) -> None:
    assert readable(metric) == label


def test_comparison_md_reads_in_a_terminal_and_plots_are_written(sweep) -> None:
    sweep_dir, _ = sweep
    out = compare(sweep_dir)
    markdown = (out / "comparison.md").read_text()
    assert max(map(len, markdown.splitlines())) <= WIDTH, markdown
    main = markdown.split("\n\n")[1].splitlines()
    assert main[0] == "| # | variant | runs | val/loss | test/loss |"
    assert [line.split(" | ")[1] for line in main[2:]] == list(VARIANTS)
    for name in ("val/acc", "val/bleu", "test/exact_match", "FLOPs/token", "wall time (s)"):
        assert f" {name} |" in markdown, name  # every column is in some table
    assert "1,234,567 |" in markdown  # a count all seeds share: no "± 0"
    for axis in ("step", "tokens", "time"):
        assert (out / f"curves_{axis}.png").stat().st_size > 10_000
