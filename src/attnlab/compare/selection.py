"""Tuned baselines: where a variant ran a grid of learning rates (`optimizer.lr`), keep the runs
of the one best on validation, so each variant is compared at its own best learning rate.

Best: the mean over seeds of the runs' optimized_metric (metrics.json), in the direction of
their optimized_mode (.hydra/config.yaml; min when absent). A learning rate with a failed run
(e.g. diverged) or a non-finite value is not picked. The test metric reported is then that
learning rate's runs' own.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import yaml

from attnlab.compare.runs import Run

LR_KEY = "optimizer.lr"


def optimized_mode(run: Run) -> str:
    """min or max: the run's optimized_mode (what its checkpointing and sweepers used)."""
    config = run.path / ".hydra" / "config.yaml"
    if config.exists():
        mode = (yaml.safe_load(config.read_text()) or {}).get("optimized_mode")
        if mode in ("min", "max"):
            return mode
    return "min"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def pick_lr(
    runs: list[Run], where: str = ""
) -> tuple[list[Run], str | None, dict[str, float], str]:
    """(the runs at the best learning rate, that lr or None when one ran, mean validation
    metric by lr, the validation metric). `where` names the runs in an error."""
    by_lr: dict[str, list[Run]] = {}
    for run in runs:
        by_lr.setdefault(str(run.overrides.get(LR_KEY)), []).append(run)
    done = [r for r in runs if r.status == "done"]
    val_metric = next((r.result.get("optimized_metric") for r in done), None) or "val/loss"
    if len(by_lr) < 2:
        return runs, None, {}, val_metric
    scores = {}
    for lr, group in by_lr.items():
        values = [r.metrics.get(val_metric) for r in group if r.status == "done"]
        if any(r.status == "failed" for r in group) or not values:
            continue
        if all(_finite(v) for v in values):
            scores[lr] = statistics.fmean(values)
    if not scores:
        raise ValueError(
            f"{where}: no learning rate has finished runs with a finite {val_metric}; "
            "learning rates: " + ", ".join(by_lr)
        )
    pick = min if optimized_mode(done[0]) == "min" else max
    best = pick(scores, key=scores.__getitem__)
    return by_lr[best], best, scores, val_metric


def tune_lr(groups: dict[str, list[Run]]) -> dict[str, list[Run]]:
    """Each variant (grouped without the lr) at its best lr; the name says which was picked."""
    tuned = {}
    for name, runs in groups.items():
        kept, lr, _, val_metric = pick_lr(runs, f"variant {name!r}")
        tuned[f"{name} ({LR_KEY}={lr} best on {val_metric})" if lr else name] = kept
    return tuned
