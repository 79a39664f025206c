"""`attnlab-compare SWEEP_DIR`: a table and plots comparing the variants of a sweep.

Every job directory under SWEEP_DIR (one with `.hydra/overrides.yaml`) is a run. Its variant is
its command-line overrides less `seed` and less those every run shares; runs of one variant are
its seeds. Writes into SWEEP_DIR/compare (or --out):

- comparison.md / comparison.csv: per variant, runs done / failed / running, mean ± std over
  seeds of the final metrics, parameters, FLOPs per token, tokens/s and wall time;
- curves_<x>.png: a validation metric against step, tokens seen and wall time, one line per
  variant (mean over its seeds);
- with --baseline: significance.md / significance.csv, every other variant against that one on
  one metric (default: the test counterpart of the optimized metric): difference of means,
  Welch's t-test, and the paired t-test over the seeds the two share (same seed, same data
  order), so "A beats B" is read against the seed-to-seed noise.

A sweep still running, or with failed jobs, is fine: unfinished runs are counted, not read.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SEED_KEYS = ("seed",)
CURVE_AXES = {"step": "step", "tokens": "progress/tokens_seen", "time": "progress/wall_time_s"}
SUMMARY_FIELDS = {  # column -> where it is in metrics.json
    "params": ("parameters", "total"),
    "params_non_embedding": ("parameters", "non_embedding"),
    "flops_per_token": ("flops_per_token",),
    "tokens_per_sec": ("tokens_per_sec",),
    "wall_time_s": ("wall_time_s",),
}


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


def variants(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs grouped by the overrides that differ between them (seeds excepted)."""
    keys = sorted({k for run in runs for k in run.overrides if k not in SEED_KEYS})
    swept = [k for k in keys if len({run.overrides.get(k) for run in runs}) > 1]
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        name = " ".join(f"{k}={run.overrides.get(k, '-')}" for k in swept) or "all runs"
        groups[name].append(run)
    return dict(groups)


def _lookup(result: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = result
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, (int, float)) else None


def mean_std(values: list[float]) -> tuple[float, float] | None:
    if not values:
        return None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(groups: dict[str, list[Run]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and one row per variant: counts, then (mean, std) of every numeric field."""
    metric_names = sorted({m for runs in groups.values() for r in runs for m in r.metrics})
    metric_names = [m for m in metric_names if m.split("/")[0] in ("val", "test")]
    columns = ["variant", "done", "failed", "running", *metric_names, *SUMMARY_FIELDS]
    rows = []
    for name, runs in groups.items():
        done = [r for r in runs if r.status == "done"]
        row: dict[str, Any] = {"variant": name}
        for status in ("done", "failed", "running"):
            row[status] = sum(r.status == status for r in runs)
        for metric in metric_names:
            row[metric] = mean_std([r.metrics[metric] for r in done if metric in r.metrics])
        for column, path in SUMMARY_FIELDS.items():
            values = [_lookup(r.result, path) for r in done]
            row[column] = mean_std([v for v in values if v is not None])
        rows.append(row)
    return columns, rows


def _format(value: Any, markdown: bool) -> str:
    if value is None:
        return "—" if markdown else ""
    if isinstance(value, tuple):
        mean, std = value
        digits = 4 if abs(mean) < 100 else 0
        return f"{mean:,.{digits}f} ± {std:,.{digits}f}" if markdown else f"{mean}±{std}"
    return str(value)


def write_tables(columns: list[str], rows: list[dict[str, Any]], out_dir: Path) -> None:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_format(row[c], True) for c in columns) + " |" for row in rows]
    (out_dir / "comparison.md").write_text("\n".join(lines) + "\n")
    with (out_dir / "comparison.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        header = []
        for column in columns:
            numeric = any(isinstance(row[column], tuple) for row in rows)
            header += [f"{column}_mean", f"{column}_std"] if numeric else [column]
        writer.writerow(header)
        for row in rows:
            cells: list[Any] = []
            for column in columns:
                if any(isinstance(r[column], tuple) for r in rows):
                    cells += list(row[column]) if row[column] else ["", ""]
                else:
                    cells.append(row[column])
            writer.writerow(cells)


def default_metric(runs: list[Run]) -> str:
    """The first run's optimized_metric when it is a validation metric, else val/loss."""
    for run in runs:
        name = run.result.get("optimized_metric") or ""
        if name.startswith("val/"):
            return name
    return "val/loss"


def plot_curves(groups: dict[str, list[Run]], metric: str, out_dir: Path) -> list[Path]:
    """One PNG per x axis (step, tokens seen, wall time): `metric`, a line per variant."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    curves = {
        name: [r.curve() for r in runs if r.status != "failed"] for name, runs in groups.items()
    }
    written = []
    for axis, column in CURVE_AXES.items():
        figure, ax = plt.subplots(figsize=(7, 4.5))
        for name, per_seed in curves.items():
            points = _mean_curve(per_seed, column, metric)
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", markersize=3, label=name)
        ax.set_xlabel({"step": "step", "tokens": "tokens seen", "time": "wall time (s)"}[axis])
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        path = out_dir / f"curves_{axis}.png"
        figure.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written


def _mean_curve(
    per_seed: list[list[dict[str, float]]], x: str, y: str
) -> list[tuple[float, float]]:
    """Mean (x, y) over seeds at each validation index that every seed with data reached."""
    series = [[(r[x], r[y]) for r in rows if x in r and y in r] for rows in per_seed]
    series = [s for s in series if s]
    if not series:
        return []
    length = min(len(s) for s in series)
    return [
        (statistics.fmean(s[i][0] for s in series), statistics.fmean(s[i][1] for s in series))
        for i in range(length)
    ]


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


def compare(
    sweep_dir: Path,
    out_dir: Path | None = None,
    metric: str | None = None,
    baseline: str | None = None,
    stat_metric: str | None = None,
    alternative: str = "two-sided",
) -> Path:
    """Write the tables and plots of `sweep_dir`'s runs; returns the output directory."""
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep directory {sweep_dir} does not exist")
    runs = find_runs(sweep_dir)
    if not runs:
        raise FileNotFoundError(
            f"no runs under {sweep_dir}: expected job directories with .hydra/overrides.yaml "
            "(a Hydra multirun's sweep directory, or one run's directory)"
        )
    groups = variants(runs)
    if baseline is not None:  # fail before writing anything
        baseline = resolve_variant(groups, baseline)
        stat_metric = stat_metric or default_stat_metric(runs)
        known = sorted({m for r in runs for m in r.metrics})
        if stat_metric not in known:
            raise ValueError(
                f"--stat-metric {stat_metric!r} is in no run's metrics.json; valid choices: "
                + ", ".join(known)
            )
    out_dir = out_dir or sweep_dir / "compare"
    out_dir.mkdir(parents=True, exist_ok=True)
    columns, rows = summarise(groups)
    write_tables(columns, rows, out_dir)
    plot_curves(groups, metric or default_metric(runs), out_dir)
    if baseline is not None and stat_metric is not None:  # both set above
        tests = significance(groups, baseline, stat_metric, alternative)
        write_significance(tests, baseline, stat_metric, alternative, out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0].strip("`"))
    parser.add_argument("sweep_dir", type=Path, help="a multirun's sweep directory")
    parser.add_argument("--out", type=Path, default=None, help="default: SWEEP_DIR/compare")
    parser.add_argument(
        "--metric", default=None, help="curve metric (default: the optimized_metric or val/loss)"
    )
    parser.add_argument(
        "--baseline",
        default=None,
        help="variant to test the others against: its name, or overrides only it has",
    )
    parser.add_argument(
        "--stat-metric", default=None, help="metric tested (default: e.g. test/acc for val/acc)"
    )
    parser.add_argument(
        "--alternative",
        choices=("two-sided", "greater", "less"),
        default="two-sided",
        help="greater: variant > baseline (a one-sided test)",
    )
    args = parser.parse_args(argv)
    try:
        out_dir = compare(
            args.sweep_dir, args.out, args.metric, args.baseline, args.stat_metric, args.alternative
        )
    except ValueError as error:
        parser.error(str(error))
    print((out_dir / "comparison.md").read_text())
    if args.baseline is not None:
        print((out_dir / "significance.md").read_text())
    print(f"Tables and plots in {out_dir}")


if __name__ == "__main__":
    main()
