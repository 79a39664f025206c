"""A scaling ladder's runs read from sweep folders: each run's rung and training compute,
the variants (the overrides that differ, less seed, lr and what the rung sets), and per
(variant, rung) the seeds at the learning rate best on validation (selection.py)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attnlab.compare.runs import SEED_KEYS, Run, find_runs
from attnlab.compare.scaling_fit import LAW
from attnlab.compare.selection import LR_KEY, pick_lr

RUNG_KEY = "ladder.rung"


@dataclass
class Rung:
    """The runs kept for one (variant, rung): its seeds at the picked learning rate."""

    label: str
    compute: np.ndarray  # training FLOPs per kept run
    values: np.ndarray  # the fitted metric per kept run
    seeds: list[str | None]
    lr: str | None = None  # the learning rate picked (None: one learning rate ran)
    lr_scores: dict[str, float] = field(default_factory=dict)  # lr -> mean validation metric
    val_metric: str = ""
    paths: list[Path] = field(default_factory=list)

    @property
    def mean_compute(self) -> float:
        return float(self.compute.mean())


def rung_of(run: Run, rung_key: str = RUNG_KEY) -> str | None:
    ladder = run.result.get("ladder")
    if rung_key == RUNG_KEY and isinstance(ladder, dict) and ladder.get("rung") is not None:
        return str(ladder["rung"])
    return run.overrides.get(rung_key)


def compute_of(run: Run) -> float | None:
    """Training FLOPs: metrics.json's ladder entry, else FLOPs per token x tokens seen."""
    ladder = run.result.get("ladder")
    for source in (ladder if isinstance(ladder, dict) else {}, run.result):
        for key in ("training_flops", "train_flops", "flops"):
            if isinstance(source.get(key), (int, float)) and source[key] > 0:
                return float(source[key])
    per_token, tokens = run.result.get("flops_per_token"), run.result.get("tokens_seen")
    if isinstance(per_token, (int, float)) and isinstance(tokens, (int, float)) and tokens > 0:
        return float(per_token) * float(tokens)
    return None


def ladder_variants(runs: list[Run], rungs: dict[int, str], rung_key: str) -> dict[str, list[Run]]:
    """Runs grouped by the overrides that differ, less seed, lr and what the rung sets."""
    ignored = {*SEED_KEYS, LR_KEY, rung_key}
    keys = sorted({k for run in runs for k in run.overrides if k not in ignored})
    swept = []
    for key in keys:
        if len({run.overrides.get(key) for run in runs}) < 2:
            continue
        per_rung: dict[str, set[str | None]] = {}
        for run in runs:
            per_rung.setdefault(rungs[id(run)], set()).add(run.overrides.get(key))
        if all(len(values) == 1 for values in per_rung.values()):
            continue  # one value per rung: a size the rung sets (e.g. model.d_model), not a variant
        swept.append(key)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        name = " ".join(f"{k}={run.overrides.get(k, '-')}" for k in swept) or "all runs"
        groups.setdefault(name, []).append(run)
    return groups


def rung_order(label: str) -> tuple[int, float | str]:
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _pick_lr(runs: list[Run], metric: str, label: str, name: str) -> Rung:
    """The (variant, rung)'s runs at the learning rate best on validation (selection.py)."""
    runs, picked, scores, val_metric = pick_lr(runs, f"variant {name!r} rung {label}")
    kept = [r for r in runs if r.status == "done" and _finite(r.metrics.get(metric))]
    computes = [compute_of(r) for r in kept]
    lost = [r for r, c in zip(kept, computes, strict=True) if c is None]
    if lost:
        raise ValueError(
            f"run {lost[0].path} has no training compute: metrics.json needs "
            "ladder.training_flops or flops_per_token and tokens_seen"
        )
    return Rung(
        label,
        np.array(computes, dtype=float),
        np.array([r.metrics[metric] for r in kept], dtype=float),
        [r.overrides.get("seed") for r in kept],
        picked,
        scores,
        val_metric,
        [r.path for r in kept],
    )


def read_ladder(
    sweep_dirs: list[Path], metric: str | None = None, rung_key: str = RUNG_KEY
) -> tuple[str, dict[str, list[Rung]], list[Run]]:
    """The fitted metric, each variant's rungs (smallest first) and every run read.

    Refuses (ValueError, one line) a ladder that cannot be fitted: fewer than three rungs, or a
    variant lacking rungs the others have.
    """
    runs: list[Run] = []
    for sweep_dir in sweep_dirs:
        if not sweep_dir.is_dir():
            raise FileNotFoundError(f"sweep directory {sweep_dir} does not exist")
        runs += find_runs(sweep_dir)
    if not runs:
        raise FileNotFoundError(
            "no runs under " + ", ".join(map(str, sweep_dirs)) + ": expected job directories "
            "with .hydra/overrides.yaml"
        )
    rungs = {id(run): rung_of(run, rung_key) for run in runs}
    unranked = [run for run in runs if rungs[id(run)] is None and run.status == "done"]
    # A failed or unfinished run may not know its rung yet (no metrics.json): it is left out.
    runs_read, runs = runs, [run for run in runs if rungs[id(run)] is not None]
    if unranked:
        raise ValueError(
            f"run {unranked[0].path} has no rung: expected a {rung_key} override "
            f"(attnlab-train -m ladder=... ladder.rung=0,1,2,3) or metrics.json's ladder.rung; "
            "--rung-key names another override that sets the size (e.g. model.d_model)"
        )
    done = [r for r in runs if r.status == "done"]
    known = sorted({m for r in done for m in r.metrics})
    if metric is None:
        metric = "test/loss" if "test/loss" in known else "val/loss"
    if metric not in known:
        raise ValueError(
            f"--stat-metric {metric!r} is in no finished run's metrics.json; valid choices: "
            + (", ".join(known) or "none (no run has finished)")
        )
    groups = ladder_variants(runs, {k: v for k, v in rungs.items() if v is not None}, rung_key)
    ladder: dict[str, list[Rung]] = {}
    for name, group in groups.items():
        by_rung: dict[str, list[Run]] = {}
        for run in group:
            by_rung.setdefault(str(rungs[id(run)]), []).append(run)
        kept = [_pick_lr(by_rung[label], metric, label, name) for label in by_rung]
        ladder[name] = sorted(
            (rung for rung in kept if len(rung.values)), key=lambda r: rung_order(r.label)
        )
    _check_fittable(ladder)
    return metric, ladder, runs_read


def _check_fittable(ladder: dict[str, list[Rung]]) -> None:
    every = sorted({r.label for rungs in ladder.values() for r in rungs}, key=rung_order)
    for name, rungs in ladder.items():
        have = [r.label for r in rungs]
        if len(have) < 3:
            raise ValueError(
                f"ladder too small to fit: variant {name!r} has finished runs at rung(s) "
                f"{', '.join(have) or 'none'}; {LAW} needs at least 3 rungs"
            )
        computes = sorted(r.mean_compute for r in rungs)
        distinct = 1 + sum(b > 1.01 * a for a, b in itertools.pairwise(computes))
        if distinct < 3:
            raise ValueError(
                f"variant {name!r}: its rungs {', '.join(have)} used {distinct} distinct "
                f"training compute(s) (an iso-FLOP ladder?); {LAW} needs at least 3"
            )
        missing = [label for label in every if label not in have]
        if missing:
            raise ValueError(
                f"variant {name!r} lacks rung(s) {', '.join(missing)} that other variants have "
                f"(it has {', '.join(have)}): finish those runs or leave the rung out of every "
                "variant"
            )
