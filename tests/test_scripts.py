"""The benchmark scripts run and print their tables (timings themselves are not asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.mark.slow  # a benchmark timing every precision (~50 s): default-suite time (issue 28)
def test_bench_precision_prints_a_row_per_mode() -> None:
    args = ["--modes", "fp32", "bf16", "--warmup", "1", "--steps", "1", "--repeats", "1"]
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_precision.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines[2:]]  # no header
    assert [cells[0] for cells in rows] == ["fp32", "bf16"], result.stdout
    assert all(float(cells[1]) > 0 for cells in rows)  # ms/step
    assert rows[0][3] == "1.00x"  # ratios are relative to fp32


def test_bench_gpu_smoke_reports_every_path(tmp_path: Path) -> None:
    """--smoke (CPU, tiny sizes) runs the three training paths, generation and the SDPA check."""
    out = tmp_path / "bench.json"
    args = ["--smoke", "--peak-flops", "1e12", "--json", str(out)]
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_gpu.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    results = json.loads(out.read_text())
    paths = results["paths"]
    assert sorted(paths) == ["a", "b", "c"]
    for row in paths.values():
        values = [row["tokens_per_s"], row["mfu"], *row["windows"]]
        assert all(math.isfinite(v) and v > 0 for v in values), row
    # The nanoGPT reference is the same network as attnlab's: same size, same FLOPs per token.
    assert paths["a"]["params"] == paths["b"]["params"] == paths["c"]["params"]
    assert paths["b"]["flops_per_token"] == paths["c"]["flops_per_token"]
    assert set(results["ratios"]) == {"a/b", "a/c"}
    gen = results["generation"]
    assert gen["cached_tokens_per_s"] > 0 and gen["uncached_tokens_per_s"] > 0
    for name in ("attnlab", "nanogpt"):
        assert results["flash"][f"{name}_backends"], results["flash"]
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    labels = [line.split("|")[1].strip() for line in table[2:]]
    assert [label[:2] for label in labels[:3]] == ["a:", "b:", "c:"], result.stdout
    assert labels[3:] == ["ratio a/b", "ratio a/c"], result.stdout


def test_training_path_imports_no_optional_packages() -> None:
    """A bare GPU machine has torch, Lightning, torchmetrics, Hydra and tokenizers only:
    attnlab's training modules must not import loggers', sweepers' or BLEU's packages."""
    code = (
        "import sys, lightning.pytorch, torchmetrics\n"
        "for name in ('wandb', 'tensorboardX', 'optuna', 'sacrebleu', 'rich'):\n"
        "    sys.modules[name] = None  # importing it now raises ImportError\n"
        "import attnlab.run.train, attnlab.run, attnlab.callbacks, attnlab.tasks, attnlab.models\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


@pytest.mark.slow  # a dozen fresh interpreters, one of which imports Lightning
def test_bench_startup_smoke_times_every_command(tmp_path: Path) -> None:
    out = tmp_path / "startup.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_startup.py"), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    medians = json.loads(out.read_text())["median_s"]
    commands = {"train", "eval", "generate", "translate", "fill-mask", "compare", "data", "prepare"}
    assert {f"attnlab-{c} --help" for c in commands} <= set(medians)
    assert {"import lightning.pytorch", "attnlab-train --cfg job"} <= set(medians)
    assert all(math.isfinite(t) and t > 0 for t in medians.values())
    rows = [line for line in result.stdout.splitlines() if line.startswith("| `")]
    assert len(rows) == len(medians), result.stdout
