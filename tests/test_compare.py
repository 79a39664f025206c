"""attnlab-compare on a real 2 x 2 multirun (two variants x two seeds), with a failed run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.image
import pytest

from attnlab.compare import compare, find_runs
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
    assert markdown.count("\n| model.norm=") == 2 and " ± " in markdown

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
