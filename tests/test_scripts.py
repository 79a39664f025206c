"""The benchmark scripts run and print their tables (timings themselves are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


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
