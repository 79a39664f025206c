"""A fitted ladder written out: ladder.md (the laws, the multipliers, the rungs kept),
ladder.csv (one row per variant) and ladder_runs.csv (every run read)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from attnlab.compare.ladder_fit import VariantFit
from attnlab.compare.ladder_reading import RUNG_KEY, compute_of, rung_of, rung_order
from attnlab.compare.runs import Run
from attnlab.compare.scaling_fit import ALPHA, ALPHA_RANGE, LAW, percentile_interval
from attnlab.compare.selection import LR_KEY

UNREACHABLE = "∞ (beyond baseline's asymptote)"


def _g(value: float, digits: int = 3) -> str:
    if math.isinf(value):
        return "∞"
    return f"{value:.{digits}g}"


def _interval(point: float, lo: float, hi: float) -> str:
    return f"{_g(point)} [{_g(lo)}, {_g(hi)}]"


def _multiplier_cell(point: float, lo: float, hi: float) -> str:
    if math.isinf(point):
        return f"{UNREACHABLE} [{_g(lo)}, {_g(hi)}]"
    return _interval(point, lo, hi)


def write_ladder(
    fits: list[VariantFit],
    metric: str,
    baseline: str | None,
    budgets: tuple[float, ...],
    n_boot: int,
    runs: list[Run],
    out_dir: Path,
    rung_key: str = RUNG_KEY,
    resample: str = "pooled",
) -> None:
    """ladder.md, ladder.csv and ladder_runs.csv in `out_dir`."""
    lines = _law_lines(fits, metric, n_boot, resample)
    lines += _multiplier_lines(fits, baseline, budgets)
    lines += _rung_lines(fits, metric)
    (out_dir / "ladder.md").write_text("\n".join(lines) + "\n")
    _write_csv(fits, baseline, budgets, metric, out_dir)
    _write_runs_csv(fits, runs, metric, rung_key, out_dir)


def _law_lines(fits: list[VariantFit], metric: str, n_boot: int, resample: str) -> list[str]:
    """The title, how the laws were fitted, their table and warnings about them."""
    how = {
        "pooled": "each rung's seeds drawn from the deviations of all the variant's seeds from "
        "their rung means",
        "rung": "each rung's seeds resampled with replacement",
    }[resample]
    lines = [
        f"# Scaling ladder: {metric} against training compute",
        "",
        f"Per variant, {LAW} with C the training FLOPs (FLOPs per token x tokens "
        f"seen), fitted to each rung's mean over seeds. Intervals: 95% percentile bootstrap over "
        f"seeds ({n_boot} samples; {how}).",
        "",
        f"| variant | rungs | seeds per rung | E [95% CI] | A [95% CI] | {ALPHA} [95% CI] |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for fit in fits:
        cells = [
            _interval(float(p[0]), *(float(q) for q in percentile_interval(b)))
            for p, b in ((fit.law.e, fit.boot.e), (fit.law.A, fit.boot.A))
        ]
        alpha = _interval(float(fit.law.alpha[0]), *map(float, percentile_interval(fit.boot.alpha)))
        seeds = sorted({len(r.values) for r in fit.rungs})
        lines.append(
            f"| {fit.name} | {len(fit.rungs)} | {'-'.join(map(str, seeds))} | "
            f"{cells[0]} | {cells[1]} | {alpha} |"
        )
    low, high = ALPHA_RANGE
    for fit in fits:
        alpha = float(fit.law.alpha[0])
        # Below 0.01 the law is nearly flat (E and A trade off freely): not a scaling law.
        if not 0.01 < alpha < high * 0.99:
            lines += [
                "",
                f"{fit.name}: {ALPHA} = {alpha:.3g} is at or near the edge of the range searched "
                f"({low:g} to {high:g}): its rungs do not pin the law down (too few rungs, too "
                "narrow a compute range, or a loss that does not fall with compute).",
            ]
    if all(len(r.values) == 1 for fit in fits for r in fit.rungs):
        lines += ["", "One seed per rung: no seed spread to resample, so the intervals are points."]
    return lines


def _multiplier_lines(
    fits: list[VariantFit], baseline: str | None, budgets: tuple[float, ...]
) -> list[str]:
    """The compute multipliers against the baseline (or how to get them)."""
    if baseline is None:
        return ["", "Compute multipliers: give --baseline (a variant's name or overrides)."]
    top = next(f for f in fits if f.multipliers).rungs[-1] if len(fits) > 1 else None
    lines = [
        "",
        f"Compute multipliers against `{baseline}`: the compute the baseline's law needs to "
        "reach the variant's fitted loss, over the compute the variant used (> 1: the "
        "variant is better; 2 means the baseline needs twice the compute). "
        "95% percentile bootstrap intervals.",
        "",
    ]
    header = ["variant", f"at the largest rung ({top.label}) [95% CI]" if top else "largest"]
    header += [f"at C = {b:.3g} FLOPs [95% CI]" for b in budgets]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for fit in fits:
        if fit.name == baseline:
            continue
        cells = [_multiplier_cell(*m) for m in fit.multipliers]
        lines.append("| " + " | ".join([fit.name, *cells]) + " |")
    return lines


def _rung_lines(fits: list[VariantFit], metric: str) -> list[str]:
    """The table of the rungs kept: compute, seeds, the metric, the learning rate picked."""
    lines = [
        "",
        "Rungs (kept runs: the learning rate best on validation where several ran):",
        "",
    ]
    tuned = any(r.lr is not None for fit in fits for r in fit.rungs)
    header = ["variant", "rung", "compute (FLOPs)", "seeds", f"{metric} (mean ± std)"]
    if tuned:
        header += ["lr picked", "mean validation metric by lr"]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for fit in fits:
        for r in fit.rungs:
            std = float(np.std(r.values, ddof=1)) if len(r.values) > 1 else 0.0
            cells = [fit.name, r.label, f"{r.mean_compute:.3g}", str(len(r.values))]
            cells.append(f"{r.values.mean():.4f} ± {std:.4f}")
            if tuned:
                ordered = sorted(r.lr_scores.items(), key=lambda item: rung_order(item[0]))
                scores = ", ".join(f"{lr}: {v:.4f}" for lr, v in ordered)
                cells += [r.lr or "—", f"{r.val_metric} {scores}" if scores else "—"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _write_csv(
    fits: list[VariantFit], baseline: str | None, budgets: tuple[float, ...], metric: str, out: Path
) -> None:
    columns = ["variant", "baseline", "metric", "rungs", "seeds_min", "top_compute"]
    for name in ("E", "A", "alpha"):
        columns += [name, f"{name}_lo", f"{name}_hi"]
    horizons = ["top", *(f"{b:.3g}" for b in budgets)]
    for h in horizons:
        columns += [f"multiplier_{h}", f"multiplier_{h}_lo", f"multiplier_{h}_hi"]
    columns += ["lr_by_rung"]
    with (out / "ladder.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for fit in fits:
            row: dict[str, Any] = {
                "variant": fit.name,
                "baseline": fit.name == baseline,
                "metric": metric,
                "rungs": len(fit.rungs),
                "seeds_min": min(len(r.values) for r in fit.rungs),
                "top_compute": fit.rungs[-1].mean_compute,
            }
            for name, point, boot in (
                ("E", fit.law.e, fit.boot.e),
                ("A", fit.law.A, fit.boot.A),
                ("alpha", fit.law.alpha, fit.boot.alpha),
            ):
                lo, hi = percentile_interval(boot)
                row[name], row[f"{name}_lo"], row[f"{name}_hi"] = float(point[0]), lo, hi
            for h, (point_m, lo_m, hi_m) in zip(horizons, fit.multipliers, strict=False):
                row[f"multiplier_{h}"] = point_m
                row[f"multiplier_{h}_lo"], row[f"multiplier_{h}_hi"] = lo_m, hi_m
            row["lr_by_rung"] = ";".join(f"{r.label}:{r.lr}" for r in fit.rungs if r.lr)
            writer.writerow(row)


def _write_runs_csv(
    fits: list[VariantFit], runs: list[Run], metric: str, rung_key: str, out: Path
) -> None:
    kept = {path: fit.name for fit in fits for r in fit.rungs for path in r.paths}
    with (out / "ladder_runs.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        header = ["path", "status", "variant", "kept", "rung", "seed", "lr", "compute", metric]
        writer.writerow(header)
        for run in runs:
            compute = compute_of(run) if run.status == "done" else None
            writer.writerow(
                [
                    run.path,
                    run.status,
                    kept.get(run.path, ""),
                    run.path in kept,
                    rung_of(run, rung_key),
                    run.overrides.get("seed", ""),
                    run.overrides.get(LR_KEY, ""),
                    "" if compute is None else compute,
                    run.metrics.get(metric, ""),
                ]
            )
