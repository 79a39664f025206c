"""`attnlab-compare --ladder SWEEP_DIR...`: scaling laws per variant and compute multipliers.

Every run has a rung (`ladder.rung`, from its overrides or from metrics.json's `ladder` entry; or
the override named by --rung-key) and a training compute C (metrics.json's
`ladder.training_flops`, else flops_per_token x tokens_seen). Runs are grouped into variants by
the overrides that differ between them, less the seed, the learning rate and what the rung
fixes. Where a (variant, rung) ran several learning rates (`optimizer.lr`), the one with the
best mean validation metric over seeds (the runs' optimized_metric, in optimized_mode) is kept.
Per variant L(C) = E + A·C^(-alpha) is fitted (scaling_fit.py) and bootstrapped over seeds; against
a baseline, the compute multiplier at C is the compute the baseline's law needs to reach the
variant's fitted loss at C, over C (> 1: the variant is better).

Writes ladder.md, ladder.csv (one row per variant), ladder_runs.csv (every run read: rung, seed,
lr, compute, metric, whether it was kept), loss_vs_compute.png and multiplier_vs_compute.png.
"""

from __future__ import annotations

import csv
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attnlab.compare.runs import SEED_KEYS, Run, find_runs
from attnlab.compare.scaling_fit import (
    ALPHA,
    ALPHA_RANGE,
    LAW,
    Laws,
    fit_laws,
    multiplier,
    percentile_interval,
    resample_means,
    resample_pooled,
)
from attnlab.compare.selection import LR_KEY, pick_lr
from attnlab.compare.significance import resolve_variant

RUNG_KEY = "ladder.rung"
UNREACHABLE = "∞ (beyond baseline's asymptote)"


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


@dataclass
class VariantFit:
    name: str
    rungs: list[Rung]
    law: Laws  # the fit to the data (one law)
    boot: Laws  # the fits to the bootstrap samples
    # (point, low, high) at the largest rung, then at each budget
    multipliers: list[tuple[float, float, float]] = field(default_factory=list)


# --- reading runs -------------------------------------------------------------------------------


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


def _rung_order(label: str) -> tuple[int, float | str]:
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
            (rung for rung in kept if len(rung.values)), key=lambda r: _rung_order(r.label)
        )
    _check_fittable(ladder)
    return metric, ladder, runs_read


def _check_fittable(ladder: dict[str, list[Rung]]) -> None:
    every = sorted({r.label for rungs in ladder.values() for r in rungs}, key=_rung_order)
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


# --- fitting ------------------------------------------------------------------------------------


RESAMPLING = ("pooled", "rung")


def _fit_variant(
    name: str,
    rungs: list[Rung],
    c_ref: float,
    n_boot: int,
    rng: np.random.Generator,
    resample: str = "pooled",
) -> VariantFit:
    compute = np.array([r.mean_compute for r in rungs])
    means = np.array([r.values.mean() for r in rungs])
    counts = np.array([len(r.values) for r in rungs])
    law = fit_laws(compute[None], means[None], counts, c_ref)
    if resample == "pooled":  # seed deviations pooled over the rungs: see scaling_fit.py
        samples = resample_pooled([r.values for r in rungs], n_boot, rng)
    else:
        samples = np.stack([resample_means(r.values, n_boot, rng) for r in rungs], axis=1)
    boot = fit_laws(np.broadcast_to(compute, samples.shape), samples, counts, c_ref)
    return VariantFit(name, rungs, law, boot)


def fit_ladder(
    ladder: dict[str, list[Rung]],
    baseline: str | None = None,
    budgets: tuple[float, ...] = (),
    n_boot: int = 1000,
    seed: int = 0,
    resample: str = "pooled",
) -> list[VariantFit]:
    """One fit per variant; against `baseline`, multipliers at the largest rung and budgets."""
    rng = np.random.default_rng(seed)
    c_ref = max(r.mean_compute for rungs in ladder.values() for r in rungs)
    fits = [
        _fit_variant(name, rungs, c_ref, n_boot, rng, resample) for name, rungs in ladder.items()
    ]
    if baseline is None:
        return fits
    base = next(f for f in fits if f.name == baseline)
    for fit in fits:
        if fit is base:
            continue
        horizons = [fit.rungs[-1].mean_compute, *budgets]
        point = multiplier(fit.law, base.law, horizons)[0]
        lo, hi = percentile_interval(multiplier(fit.boot, base.boot, horizons))
        fit.multipliers = [
            (float(p), float(a), float(b)) for p, a, b in zip(point, lo, hi, strict=True)
        ]
    return fits


# --- writing ------------------------------------------------------------------------------------


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
    if baseline is not None:
        top = next(f for f in fits if f.multipliers).rungs[-1] if len(fits) > 1 else None
        lines += [
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
    else:
        lines += ["", "Compute multipliers: give --baseline (a variant's name or overrides)."]
    lines += [
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
                ordered = sorted(r.lr_scores.items(), key=lambda item: _rung_order(item[0]))
                scores = ", ".join(f"{lr}: {v:.4f}" for lr, v in ordered)
                cells += [r.lr or "—", f"{r.val_metric} {scores}" if scores else "—"]
            lines.append("| " + " | ".join(cells) + " |")
    (out_dir / "ladder.md").write_text("\n".join(lines) + "\n")
    _write_csv(fits, baseline, budgets, metric, out_dir)
    _write_runs_csv(fits, runs, metric, rung_key, out_dir)


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


def compare_ladder(
    sweep_dirs: list[Path],
    out_dir: Path | None = None,
    baseline: str | None = None,
    metric: str | None = None,
    budgets: tuple[float, ...] = (),
    n_boot: int = 1000,
    rung_key: str = RUNG_KEY,
    seed: int = 0,
    resample: str = "pooled",
) -> Path:
    """Read, fit, write ladder.md / ladder.csv / plots; returns the output directory."""
    metric, ladder, runs = read_ladder(sweep_dirs, metric, rung_key)
    if baseline is not None:
        baseline = resolve_variant(ladder, baseline)  # type: ignore[arg-type]
    bad = [b for b in budgets if not (b > 0 and math.isfinite(b))]
    if bad:
        raise ValueError(f"--budget {bad[0]!r}: a compute budget is a positive number of FLOPs")
    if resample not in RESAMPLING:
        raise ValueError(f"--resample {resample!r}; valid choices: {', '.join(RESAMPLING)}")
    fits = fit_ladder(ladder, baseline, budgets, n_boot, seed, resample)
    out_dir = out_dir or sweep_dirs[0] / "compare"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_ladder(fits, metric, baseline, budgets, n_boot, runs, out_dir, rung_key, resample)
    from attnlab.compare.ladder_plots import plot_ladder

    plot_ladder(fits, metric, baseline, budgets, out_dir)
    return out_dir
