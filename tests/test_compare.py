"""attnlab-compare on a real 2 x 2 multirun (two variants x two seeds), with a failed run."""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
import statistics
from pathlib import Path

import matplotlib.image
import pytest

from attnlab.compare import Run, compare, find_runs, significance
from tests.conftest import TINY_SETUP, run_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


SHORT = [
    *TINY_SETUP,
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    sweep = root / "sweep"
    run_cli(
        "attnlab-train",
        "-m",
        "model.norm=layernorm,rmsnorm",
        "seed=1,2",
        *SHORT,
        f"hydra.sweep.dir={sweep}",
        cwd=root,
    )
    return sweep


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_compare_tables_and_plots_of_a_2x2_sweep(sweep_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = run_cli("attnlab-compare", str(sweep_dir), "--out", str(out), cwd=tmp_path)
    assert "model.norm=layernorm" in result.stdout and "model.norm=rmsnorm" in result.stdout

    rows = read_csv(out / "comparison.csv")
    assert [row["variant"] for row in rows] == ["model.norm=layernorm", "model.norm=rmsnorm"]
    assert all(row["done"] == "2" and row["failed"] == "0" for row in rows)  # 4 runs in all
    for row in rows:
        # Mean and std over the two seeds of each variant, from the runs' metrics.json.
        losses = [
            json.loads(p.read_text())["metrics"]["test/loss"]
            for p in sweep_dir.glob("*/metrics.json")
            if row["variant"]
            in (p.parent / ".hydra" / "overrides.yaml").read_text().replace("- ", "").splitlines()
        ]
        assert len(losses) == 2
        assert float(row["test/loss_mean"]) == pytest.approx(sum(losses) / 2)
        assert float(row["test/loss_std"]) > 0  # two seeds, two different results
        assert float(row["params_mean"]) > 0 and float(row["wall_time_s_mean"]) > 0
        assert float(row["tokens_per_sec_mean"]) > 0
    markdown = (out / "comparison.md").read_text()
    assert markdown.count(" | model.norm=") == 2 and " ± " in markdown  # | 1 | model.norm=...

    for axis in ("step", "tokens", "time"):
        png = out / f"curves_{axis}.png"
        assert png.read_bytes()[:8] == PNG_SIGNATURE
        height, width, _ = matplotlib.image.imread(png).shape
        assert height > 100 and width > 100


def test_failed_and_unfinished_runs_are_shown_not_fatal(sweep_dir: Path, tmp_path: Path) -> None:
    # A real failure (an impossible size: 31 is not divisible by 2 heads) in the sweep
    # directory, and a job that has started but not finished (no metrics.json yet).
    failed = sweep_dir / "failed_job"
    run_cli(
        "attnlab-train",
        *SHORT,
        "model.norm=rmsnorm",
        "model.d_model=31",
        "seed=3",
        f"hydra.run.dir={failed}",
        cwd=tmp_path,
        check=False,
    )
    report = json.loads((failed / "failure.json").read_text())
    assert report["status"] == "failed" and "divisible" in report["error"]
    running = sweep_dir / "running_job"
    (running / ".hydra").mkdir(parents=True)
    overrides = (sweep_dir / "2" / ".hydra" / "overrides.yaml").read_text()  # rmsnorm, seed 1
    assert "model.norm=rmsnorm" in overrides
    (running / ".hydra" / "overrides.yaml").write_text(overrides.replace("seed=1", "seed=4"))
    try:
        statuses = sorted(run.status for run in find_runs(sweep_dir))
        assert statuses == ["done"] * 4 + ["failed", "running"]
        rows = read_csv(compare(sweep_dir, tmp_path / "report") / "comparison.csv")
        counts = {r["variant"]: (r["done"], r["failed"], r["running"]) for r in rows}
        assert counts == {
            "model.d_model=32 model.norm=layernorm": ("2", "0", "0"),
            "model.d_model=32 model.norm=rmsnorm": ("2", "0", "1"),
            "model.d_model=31 model.norm=rmsnorm": ("0", "1", "0"),
        }
    finally:
        for path in (failed, running):
            for file in sorted(path.rglob("*"), reverse=True):
                file.unlink() if file.is_file() else file.rmdir()
            path.rmdir()


def test_compare_on_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("attnlab-compare", str(tmp_path / "nope"), cwd=tmp_path, check=False)
    assert result.returncode != 0 and "does not exist" in result.stderr


def _t_cdf(t: float, df: int) -> float:
    """Student's t CDF in closed form for 2 and 4 degrees of freedom (x = t / sqrt(df + t^2))."""
    x = t / math.sqrt(df + t * t)
    if df == 2:
        return 0.5 + x / 2
    if df == 4:
        return 0.5 + 0.75 * x * (1 - x * x / 3)
    raise ValueError(df)


def _fake_run(seed: int, value: float) -> Run:
    result = {"metrics": {"test/acc": value}}
    return Run(Path(f"run{seed}"), {"seed": str(seed)}, "done", result=result)


def test_significance_matches_the_t_distribution_in_closed_form() -> None:
    # The variant is the baseline's values shifted and shuffled across seeds: equal variances and
    # three runs each make Welch's test have exactly 4 degrees of freedom; the paired test has 2.
    rng = random.Random()
    for _ in range(5):
        base = [rng.uniform(0.7, 0.9) for _ in range(3)]
        shift = rng.uniform(-0.05, 0.05)
        order = rng.choice(list(itertools.permutations(range(3)))[1:])  # not the identity
        variant = [base[i] + shift for i in order]
        groups = {
            "base": [_fake_run(s, v) for s, v in enumerate(base)],
            "new": [_fake_run(s, v) for s, v in enumerate(variant)],
        }
        for alternative in ("two-sided", "better", "worse"):  # accuracy: better is greater
            (row,) = significance(groups, "base", "test/acc", alternative)
            assert row["n"] == row["baseline_n"] == row["paired_n"] == 3
            assert row["difference"] == pytest.approx(shift)
            welch_t = shift / math.sqrt(2 * statistics.variance(base) / 3)
            diffs = [v - b for v, b in zip(variant, base, strict=True)]
            paired_t = statistics.fmean(diffs) / (statistics.stdev(diffs) / math.sqrt(3))
            assert row["welch_t"] == pytest.approx(welch_t)
            assert row["paired_t"] == pytest.approx(paired_t)
            for t, p, df in ((welch_t, row["welch_p"], 4), (paired_t, row["paired_p"], 2)):
                expected = {
                    "two-sided": 2 * (1 - _t_cdf(abs(t), df)),
                    "better": 1 - _t_cdf(t, df),
                    "worse": _t_cdf(t, df),
                }[alternative]
                assert p == pytest.approx(expected, rel=1e-6)


def test_significance_pairs_only_shared_seeds() -> None:
    groups = {
        "base": [_fake_run(s, 0.8 + 0.01 * s) for s in (1, 2, 3)],
        "new": [_fake_run(s, 0.85 - 0.01 * s) for s in (2, 3, 4, 5)],
        "one": [_fake_run(9, 0.9)],
        # seed 2 ran twice: both runs count for Welch's test, neither can be paired
        "rerun": [_fake_run(s, 0.9 - 0.01 * s) for s in (1, 2, 2, 3)],
    }
    new, one, rerun = significance(groups, "base", "test/acc")
    assert (new["n"], new["baseline_n"], new["paired_n"]) == (4, 3, 2)
    assert new["paired_p"] is not None and 0 < new["welch_p"] < 1
    assert (one["n"], one["paired_n"], one["welch_p"], one["paired_p"]) == (1, 0, None, None)
    assert (rerun["n"], rerun["paired_n"]) == (4, 2)
    assert rerun["difference"] == pytest.approx((0.89 + 0.88 + 0.88 + 0.87) / 4 - 0.82)


def test_compare_against_a_baseline_on_a_real_sweep(sweep_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = run_cli(
        "attnlab-compare",
        str(sweep_dir),
        "--out",
        str(out),
        "--baseline",
        "model.norm=layernorm",
        "--stat-metric",
        "test/loss",
        "--alternative",
        "better",
        cwd=tmp_path,
    )
    assert "test/loss against baseline `model.norm=layernorm`" in result.stdout
    assert "one-sided: variant better (lower) than baseline; lower is better" in result.stdout
    (row,) = read_csv(out / "significance.csv")
    assert row["variant"] == "model.norm=rmsnorm" and row["metric"] == "test/loss"
    assert (row["n"], row["baseline_n"], row["paired_n"]) == ("2", "2", "2")  # seeds 1 and 2
    losses = {}
    for path in sweep_dir.glob("*/metrics.json"):
        overrides = (path.parent / ".hydra" / "overrides.yaml").read_text()
        norm = "rmsnorm" if "model.norm=rmsnorm" in overrides else "layernorm"
        losses.setdefault(norm, []).append(json.loads(path.read_text())["metrics"]["test/loss"])
    expected = statistics.fmean(losses["rmsnorm"]) - statistics.fmean(losses["layernorm"])
    assert float(row["difference"]) == pytest.approx(expected)
    assert 0 < float(row["welch_p"]) < 1 and 0 < float(row["paired_p"]) < 1


@pytest.mark.parametrize(
    ("flag", "value", "named"),
    [
        ("--baseline", "model.norm=batchnorm", "model.norm=rmsnorm"),
        ("--stat-metric", "test/acuracy", "test/loss"),
    ],
)
def test_bad_baseline_or_metric_is_a_clear_error_and_writes_nothing(
    sweep_dir: Path, tmp_path: Path, flag: str, value: str, named: str
) -> None:
    out = tmp_path / "report"
    args = (
        ["--baseline", "model.norm=layernorm", flag, value]
        if flag != "--baseline"
        else [flag, value]
    )
    result = run_cli(
        "attnlab-compare", str(sweep_dir), "--out", str(out), *args, cwd=tmp_path, check=False
    )
    assert result.returncode == 2
    assert value in result.stderr and "valid choices" in result.stderr and named in result.stderr
    assert not out.exists()
