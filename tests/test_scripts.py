"""The benchmark scripts run and print their tables (timings themselves are not asserted)."""

from __future__ import annotations

import json
import math
import re
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


def _bench_gpu(tmp_path: Path, *args: str) -> tuple[dict, str]:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_gpu.py"), "--smoke", *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return json.loads(out.read_text()), result.stdout


@pytest.mark.slow  # a fresh process per path and repeat: ~1-2 min on 2 cores
def test_bench_gpu_smoke_reports_every_path(tmp_path: Path) -> None:
    """--smoke (CPU, tiny sizes): the three training paths, each in fresh processes in a
    shuffled order, their medians, both MFUs, peak memory and the bootstrap intervals of the
    ratios; generation, the SDPA check and the largest batch."""
    results, stdout = _bench_gpu(tmp_path, "--peak-flops", "1e12", "--largest-batch")
    paths = results["paths"]
    assert sorted(paths) == ["a", "b", "c"]
    assert sorted(results["order"]) == ["a", "a", "b", "b", "c", "c"]  # 2 repeats each
    for row in paths.values():
        values = [row["tokens_per_s"], row["mfu"], row["hardware_mfu"], *row["windows"]]
        assert all(math.isfinite(v) and v > 0 for v in values), row
        assert row["repeats"] == 2 and len(row["windows"]) == 2 * 3
        assert row["hardware_mfu"] < row["mfu"]  # causal attention: about half the scores run
        assert row["peak_memory_bytes"] > 2**20
    # The nanoGPT reference is the same network as attnlab's: same size, same FLOPs per token.
    assert paths["a"]["params"] == paths["b"]["params"] == paths["c"]["params"]
    assert paths["b"]["flops_per_token"] == paths["c"]["flops_per_token"]
    for ratio in results["ratios"].values():
        assert ratio["low"] <= ratio["ratio"] <= ratio["high"]
    assert set(results["ratios"]) == {"a/b", "a/c"}
    gen = results["extras"]["generation"]
    assert gen["cached_tokens_per_s"] > 0 and gen["uncached_tokens_per_s"] > 0
    for name in ("attnlab", "nanogpt"):
        assert results["extras"]["flash"][f"{name}_backends"], results["extras"]
    assert {row["largest"] for row in results["largest_batch"].values()} == {8}  # the smoke cap
    table = [line for line in stdout.splitlines() if line.startswith("| ")]
    labels = [line.split("|")[1].strip() for line in table[2:]]
    assert [label[:2] for label in labels[:3]] == ["a:", "b:", "c:"], stdout
    assert labels[3:] == ["ratio a/b", "ratio a/c"], stdout


@pytest.mark.slow  # three runners, each a fresh process
def test_bench_gpu_to_loss_smoke_reaches_a_trivial_target(tmp_path: Path) -> None:
    """--to-loss on the CPU with a target every model starts below: each runner (attnlab
    AdamW, attnlab Muon, the nanoGPT loop) stops at its first validation and reports it."""
    results, stdout = _bench_gpu(tmp_path, "--to-loss", "50")
    rows = results["to_loss"]
    assert sorted(rows) == ["attnlab-adamw", "attnlab-muon", "nanogpt"]
    for name, row in rows.items():
        assert row["reached"] and row["loss"] <= 50, (name, row)
        assert row["step"] == 2 and row["tokens"] == 2 * 4 * 64, (name, row)  # batch 4 x 64
        assert row["wall_s"] > 0
    assert "| attnlab-muon | yes |" in stdout


def test_bootstrap_interval_covers_the_ratio_and_narrows_with_agreement() -> None:
    sys.path.insert(0, str(SCRIPTS))
    from bench_gpu import bootstrap_ratio

    rng = __import__("random").Random(0)
    noisy = [[rng.gauss(100, 10) for _ in range(10)] for _ in range(3)]
    steady = [[rng.gauss(100, 1) for _ in range(10)] for _ in range(3)]
    ratio, low, high = bootstrap_ratio(noisy, steady)
    assert low <= ratio <= high
    _, tight_low, tight_high = bootstrap_ratio(steady, steady)
    assert tight_high - tight_low < high - low
    assert tight_low <= 1.0 <= tight_high


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


def test_gpu_session_script_parses_and_passes_only_flags_the_scripts_take() -> None:
    """scripts/gpu_session.sh runs once, on a GPU lent by chance: a typo there would cost the
    session. Its shell syntax, and every --flag it gives bench_gpu.py and bench_loss.py."""
    script = SCRIPTS / "gpu_session.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text().replace("\\\n", " ")
    helps = {}
    for name in ("bench_gpu.py", "bench_loss.py"):
        helps[name] = subprocess.run(
            [sys.executable, str(SCRIPTS / name), "--help"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
    bench_flags = set(re.findall(r"--[a-z][a-z0-9-]*", text.split("BENCH=(", 1)[1]))
    loss_line = next(line for line in text.splitlines() if line.startswith("stage loss_memory"))
    used = {
        "bench_gpu.py": bench_flags - set(re.findall(r"--[a-z][a-z0-9-]*", loss_line)),
        "bench_loss.py": set(re.findall(r"--[a-z][a-z0-9-]*", loss_line)),
    }
    for name, flags in used.items():
        missing = {f for f in flags if f not in helps[name]}
        assert not missing, f"{name} does not take {sorted(missing)}"
