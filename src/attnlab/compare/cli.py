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
from pathlib import Path

from attnlab.compare.plots import plot_curves
from attnlab.compare.runs import default_metric, find_runs, variants
from attnlab.compare.significance import (
    default_stat_metric,
    resolve_variant,
    significance,
    write_significance,
)
from attnlab.compare.tables import summarise, write_tables


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
    metric = metric or default_metric(runs)
    write_tables(columns, rows, out_dir, metric)
    plot_curves(groups, metric, out_dir, title=sweep_dir.resolve().name)
    if baseline is not None and stat_metric is not None:  # both set above
        tests = significance(groups, baseline, stat_metric, alternative)
        write_significance(tests, baseline, stat_metric, alternative, out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="attnlab-compare", description=__doc__.splitlines()[0].strip("`")
    )
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
