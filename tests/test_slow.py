"""Slow end-to-end checks (`make test-slow`; CI runs them too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_wheel_ships_configs_and_trains_from_any_directory(tmp_path: Path) -> None:
    """`pip install .` gives a working attnlab-train: the wheel carries conf/ as attnlab.conf."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = (tmp_path / "dist").glob("attnlab-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    assert {
        "attnlab/conf/train.yaml",
        "attnlab/conf/model/encdec.yaml",
        "attnlab/conf/experiment/encdec_reverse.yaml",
    } <= names
    # The unpacked wheel comes first on sys.path, ahead of the editable checkout.
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, attnlab, attnlab.run.train; print(attnlab.__file__); "
            "sys.argv = ['attnlab-train', 'debug=fast', 'print_config=false', "
            "'data.num_train=64', 'trainer.accelerator=cpu']; attnlab.run.train.main()",
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(str(tmp_path / "site"))
    (metrics,) = workdir.glob("logs/debug/runs/*/metrics.json")
    assert json.loads(metrics.read_text())["global_step"] == 1


def test_quick_start_run_reaches_99_percent_exact_match(tmp_path: Path) -> None:
    """The README's `make train` figure: held-out exact match >= 99% on a CPU."""
    run_dir = tmp_path / "run"
    run_cli(
        "attnlab-train",
        "experiment=encdec_reverse",
        "trainer.accelerator=cpu",
        "callbacks.rich_progress_bar=null",
        "print_config=false",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        timeout=1500,
    )
    result = json.loads((run_dir / "metrics.json").read_text())
    assert result["metrics"]["test/exact_match"] >= 0.99, result["metrics"]
