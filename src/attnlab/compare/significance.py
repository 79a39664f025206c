"""significance.md / significance.csv: every variant against a baseline on one metric, with
Welch's t-test over all runs and the paired t-test over the seeds the two share."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Any

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
    two share. `alternative` is scipy's: "greater" tests variant > baseline.
    """
    from scipy import stats  # 1.6 s to import: only when a baseline is asked for

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
        if len(values) > 1 and len(base) > 1:
            test = stats.ttest_ind(values, base_values, equal_var=False, alternative=alternative)
            row["welch_t"], row["welch_p"] = float(test.statistic), float(test.pvalue)
        by_seed = _by_unique_seed(variant)
        shared = sorted(set(by_seed) & set(base_by_seed))
        row["paired_n"] = len(shared)
        if len(shared) > 1:
            test = stats.ttest_rel(
                [by_seed[s] for s in shared],
                [base_by_seed[s] for s in shared],
                alternative=alternative,
            )
            row["paired_t"], row["paired_p"] = float(test.statistic), float(test.pvalue)
        rows.append(row)
    return rows


def write_significance(
    rows: list[dict[str, Any]], baseline: str, metric: str, alternative: str, out_dir: Path
) -> None:
    columns = ["variant", "n", "baseline_n", "difference", "welch_t", "welch_p"]
    columns += ["paired_n", "paired_t", "paired_p"]

    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = [
        f"{metric} against baseline `{baseline}` (t-tests, alternative: {alternative}):",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + " --- |" * len(columns),
    ]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    (out_dir / "significance.md").write_text("\n".join(lines) + "\n")
    with (out_dir / "significance.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["baseline", "metric", *columns])
        writer.writeheader()
        for row in rows:
            writer.writerow({"baseline": baseline, "metric": metric, **row})
