"""significance.md / significance.csv: every variant against a baseline on one metric, with
Welch's t-test over all runs and the paired t-test over the seeds the two share; p-values
Holm-corrected over the variants tested, and the minimum detectable effect of each test."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Any

from attnlab.compare.direction import metric_mode, reading, scipy_alternative, stated
from attnlab.compare.runs import Run, default_metric


def resolve_variant(groups: dict[str, list[Run]], baseline: str) -> str:
    """The variant named by `baseline`: its full name, or overrides (`k=v ...`) only it has."""
    if baseline in groups:
        return baseline
    wanted = set(baseline.split())
    matches = [name for name in groups if wanted <= set(name.split())]
    if len(matches) != 1:
        found = "no variant" if not matches else f"{len(matches)} variants"
        raise ValueError(
            f"--baseline {baseline!r} matches {found}; valid choices: "
            + ", ".join(repr(name) for name in groups)
        )
    return matches[0]


def default_stat_metric(runs: list[Run]) -> str:
    """The test counterpart of the optimized metric (val/acc -> test/acc) when runs have it."""
    optimized = default_metric(runs)
    test_name = "test/" + optimized.split("/", 1)[1]
    has_test = any(test_name in r.metrics for r in runs if r.status == "done")
    return test_name if has_test else optimized


def _done_values(runs: list[Run], metric: str) -> list[tuple[str | None, float]]:
    """(seed, value) of every done run that has `metric`; seed None where it was not set."""
    return [
        (r.overrides.get("seed"), r.metrics[metric])
        for r in runs
        if r.status == "done" and metric in r.metrics
    ]


def _by_unique_seed(values: list[tuple[str | None, float]]) -> dict[str, float]:
    """Seed -> value, for seeds that ran once (a repeated seed cannot be paired unambiguously)."""
    seeds = [seed for seed, _ in values]
    return {seed: v for seed, v in values if seed is not None and seeds.count(seed) == 1}


def significance(
    groups: dict[str, list[Run]], baseline: str, metric: str, alternative: str = "two-sided"
) -> list[dict[str, Any]]:
    """Every other variant against `baseline` on `metric`.

    Welch's t-test (unequal variances) over all done runs, and the paired t-test over the seeds
    both variants ran: a seed fixes initialisation and data order, so pairing removes what the
    two share. `alternative`: two-sided, better or worse (in the metric's direction,
    direction.py), or scipy's greater/less where they mean better.
    """
    from scipy import stats  # 1.6 s to import: only when a baseline is asked for

    mode = metric_mode(metric, [r for runs in groups.values() for r in runs])
    alternative = scipy_alternative(alternative, metric, mode)
    base = _done_values(groups[baseline], metric)
    base_values = [v for _, v in base]
    base_by_seed = _by_unique_seed(base)
    rows = []
    for name, runs in groups.items():
        if name == baseline:
            continue
        variant = _done_values(runs, metric)
        values = [v for _, v in variant]
        row: dict[str, Any] = {"variant": name, "n": len(values), "baseline_n": len(base)}
        row["difference"] = (
            statistics.fmean(values) - statistics.fmean(base_values) if values and base else None
        )
        row["welch_t"] = row["welch_p"] = row["paired_t"] = row["paired_p"] = None
        row["welch_mde"] = _welch_mde(values, base_values, alternative)
        if len(values) > 1 and len(base) > 1:
            test = stats.ttest_ind(values, base_values, equal_var=False, alternative=alternative)
            row["welch_t"], row["welch_p"] = float(test.statistic), float(test.pvalue)
        by_seed = _by_unique_seed(variant)
        shared = sorted(set(by_seed) & set(base_by_seed))
        row["paired_n"] = len(shared)
        diffs = [by_seed[s] - base_by_seed[s] for s in shared]
        row["paired_mde"] = _paired_mde(diffs, alternative)
        if len(shared) > 1:
            test = stats.ttest_rel(
                [by_seed[s] for s in shared],
                [base_by_seed[s] for s in shared],
                alternative=alternative,
            )
            row["paired_t"], row["paired_p"] = float(test.statistic), float(test.pvalue)
        rows.append(row)
    add_corrections(rows)
    return rows


ALPHA, POWER = 0.05, 0.8
HEADERS = {"baseline_n": "baseline n", "paired_n": "pairs", "p_holm": "p (Holm)"}
HEADERS |= {"significant": f"significant (Holm, {ALPHA})", "mde": "MDE"}


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None and is not counted in the family).

    The i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) p_(j)): reject
    where the adjusted value is below the level, which bounds the chance of any false positive
    among the m tests by that level.
    """
    present = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    adjusted: list[float | None] = [None] * len(pvalues)
    running, m = 0.0, len(present)
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def min_detectable_effect(
    se: float, df: float, alternative: str = "two-sided", alpha: float = ALPHA, power: float = POWER
) -> float:
    """The smallest true difference a t-test with this standard error and df detects with
    probability `power` at level `alpha` (noncentral t; `alternative` as in scipy). Exact for
    the paired test; for Welch's, whose df is estimated, an approximation (simulated power at
    the MDE 0.70-0.80 at 3-5 seeds, tests/test_ladder_fit.py)."""
    import numpy as np
    from scipy import optimize, stats

    if se == 0:
        return 0.0
    if alternative == "two-sided":
        crit = stats.t.ppf(1 - alpha / 2, df)

        def power_at(nc: float) -> float:
            # The far tail is ~0 (scipy returns NaN for it at large nc).
            return stats.nct.sf(crit, df, nc) + float(np.nan_to_num(stats.nct.cdf(-crit, df, nc)))
    else:
        crit = stats.t.ppf(1 - alpha, df)

        def power_at(nc: float) -> float:
            return stats.nct.sf(crit, df, nc)

    high = crit + 3.0
    while power_at(high) < power:  # power rises with nc: widen the bracket until it holds
        high *= 2
    nc = optimize.brentq(lambda nc: power_at(nc) - power, 0.0, high)
    return float(nc * se)


def _welch_mde(values: list[float], base: list[float], alternative: str) -> float | None:
    if len(values) < 2 or len(base) < 2:
        return None
    v1, v2 = statistics.variance(values) / len(values), statistics.variance(base) / len(base)
    se = math.sqrt(v1 + v2)
    if se == 0:
        return 0.0
    df = (v1 + v2) ** 2 / (v1**2 / (len(values) - 1) + v2**2 / (len(base) - 1))
    return min_detectable_effect(se, df, alternative)


def _paired_mde(diffs: list[float], alternative: str) -> float | None:
    if len(diffs) < 2:
        return None
    se = statistics.stdev(diffs) / math.sqrt(len(diffs))
    return min_detectable_effect(se, len(diffs) - 1, alternative)


def add_corrections(rows: list[dict[str, Any]], level: float = ALPHA) -> None:
    """Holm-adjusted p-values and significance at `level` after correction, per test."""
    for test in ("welch", "paired"):
        adjusted = holm([row[f"{test}_p"] for row in rows])
        for row, p in zip(rows, adjusted, strict=True):
            row[f"{test}_p_holm"] = p
            row[f"{test}_significant"] = None if p is None else p < level


def write_significance(
    rows: list[dict[str, Any]],
    baseline: str,
    metric: str,
    alternative: str,
    out_dir: Path,
    mode: str | None = None,
) -> None:
    """`alternative` is scipy's; `mode` (min/max) says which way is better for `metric`."""
    columns = ["variant", "n", "baseline_n", "difference"]
    columns += ["welch_t", "welch_p", "welch_p_holm", "welch_significant", "welch_mde"]
    columns += ["paired_n", "paired_t", "paired_p", "paired_p_holm", "paired_significant"]
    columns += ["paired_mde"]

    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        if isinstance(value, bool):
            return "yes" if value else "no"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    sided, better = stated(alternative, mode), reading(mode)
    lines = [
        f"{metric} against baseline `{baseline}` (t-tests, {sided}"
        + (f"; {better}):" if better else "):"),
        "",
        "difference: variant mean minus baseline mean.",
        "",
        f"p (Holm): adjusted over the {len(rows)} variant(s) tested against the baseline; "
        f"significant: p (Holm) < {ALPHA}. MDE: the smallest true difference the test detects "
        f"with power {POWER} at level {ALPHA} ({sided}) given the measured seed spread; a "
        "difference smaller than it is no evidence of no effect.",
    ]
    for test, title, n_columns in (
        ("welch", "Welch's t-test (all runs)", ["n", "baseline_n"]),
        ("paired", "paired t-test (seeds both ran)", ["paired_n"]),
    ):
        shown = ["variant", *n_columns, "difference", f"{test}_t", f"{test}_p"]
        shown += [f"{test}_p_holm", f"{test}_significant", f"{test}_mde"]
        short = [c if c in HEADERS else c.removeprefix(f"{test}_") for c in shown]
        names = [HEADERS.get(c, c) for c in short]
        lines += ["", f"{title}:", "", "| " + " | ".join(names) + " |"]
        lines += ["|" + " --- |" * len(shown)]
        lines += ["| " + " | ".join(cell(row[c]) for c in shown) + " |" for row in rows]
    (out_dir / "significance.md").write_text("\n".join(lines) + "\n")
    with (out_dir / "significance.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["baseline", "metric", *columns])
        writer.writeheader()
        for row in rows:
            writer.writerow({"baseline": baseline, "metric": metric, **row})
