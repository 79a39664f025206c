"""Read a sweep: every job directory (one with `.hydra/overrides.yaml`) is a run, done, failed or
still running; runs that differ only in their seed are one variant."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SEED_KEYS = ("seed",)


@dataclass
class Run:
    """One job directory of a sweep."""

    path: Path
    overrides: dict[str, str]
    status: str  # done | failed | running
    result: dict[str, Any] = field(default_factory=dict)  # metrics.json
    error: str = ""

    @property
    def metrics(self) -> dict[str, float]:
        return self.result.get("metrics", {})

    def curve(self) -> list[dict[str, float]]:
        """The logged rows (CSV logger) that hold validation metrics, in step order."""
        files = sorted(self.path.glob("**/metrics.csv"))
        if not files:
            return []
        with files[0].open() as handle:
            rows = [
                {k: float(v) for k, v in row.items() if v not in ("", None)}
                for row in csv.DictReader(handle)
            ]
        return sorted((r for r in rows if any(k.startswith("val/") for k in r)), key=_step)


def _step(row: dict[str, float]) -> float:
    return row.get("step", 0.0)


def read_run(path: Path) -> Run:
    lines = yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or []
    overrides = dict(line.split("=", 1) for line in lines if "=" in line)
    # Hydra writes a sweep's values in its own spelling (False for false): compare parsed values.
    overrides = {key.lstrip("+~"): _canonical(value) for key, value in overrides.items()}
    metrics_file, failure_file = path / "metrics.json", path / "failure.json"
    failed_later = failure_file.exists() and (
        not metrics_file.exists() or failure_file.stat().st_mtime > metrics_file.stat().st_mtime
    )
    if failed_later:
        error = json.loads(failure_file.read_text()).get("error", "")
        return Run(path, overrides, "failed", error=error)
    if metrics_file.exists():
        return Run(path, overrides, "done", result=json.loads(metrics_file.read_text()))
    return Run(path, overrides, "running")


def _canonical(value: str) -> str:
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return value if isinstance(parsed, (dict, list)) or parsed is None else str(parsed)


def find_runs(sweep_dir: Path) -> list[Run]:
    """Every job directory under sweep_dir, in job order."""
    paths = [p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")]
    return [read_run(p) for p in sorted(paths, key=lambda p: (len(p.parts), str(p)))]


def variants(runs: list[Run], ignore: tuple[str, ...] = SEED_KEYS) -> dict[str, list[Run]]:
    """Runs grouped by the overrides that differ between them (seeds, or `ignore`, excepted)."""
    keys = sorted({k for run in runs for k in run.overrides if k not in ignore})
    swept = [k for k in keys if len({run.overrides.get(k) for run in runs}) > 1]
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        name = " ".join(f"{k}={run.overrides.get(k, '-')}" for k in swept) or "all runs"
        groups[name].append(run)
    return dict(groups)


def default_metric(runs: list[Run]) -> str:
    """The first run's optimized_metric when it is a validation metric, else val/loss."""
    for run in runs:
        name = run.result.get("optimized_metric") or ""
        if name.startswith("val/"):
            return name
    return "val/loss"
