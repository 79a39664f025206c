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
  order), so "A beats B" is read against the seed-to-seed noise; p-values Holm-corrected over
  the variants tested, and each test's minimum detectable effect;
- with --tune-lr: where variants ran several optimizer.lr, each at its lr best on validation.

A sweep still running, or with failed jobs, is fine: unfinished runs are counted, not read.

With --ladder (one or more SWEEP_DIRs holding a scaling ladder's rungs): ladder.md / ladder.csv,
loss_vs_compute.png and multiplier_vs_compute.png; see attnlab.compare.ladder.

With --html, also report.html: all of it on one self-contained page (html_report.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from attnlab.compare import selection
from attnlab.compare.direction import ALTERNATIVES, metric_mode, reading, scipy_alternative
from attnlab.compare.plots import plot_curves
from attnlab.compare.runs import SEED_KEYS, default_metric, find_runs, variants
from attnlab.compare.significance import (
    default_stat_metric,
    resolve_variant,
    significance,
    write_significance,
)
from attnlab.compare.tables import main_columns, summarise, write_tables
from attnlab.utils.extras import MissingExtraError, require


def compare(
    sweep_dir: Path,
    out_dir: Path | None = None,
    metric: str | None = None,
    baseline: str | None = None,
    stat_metric: str | None = None,
    alternative: str = "two-sided",
    tune_lr: bool = False,
    html: bool = False,
) -> Path:
    """Write the tables and plots of `sweep_dir`'s runs (and, with `html`, report.html);
    returns the output directory."""
    require("matplotlib", feature="attnlab-compare's plots")  # before any work
    if baseline is not None:
        require("scipy", feature="attnlab-compare --baseline")
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep directory {sweep_dir} does not exist")
    runs = find_runs(sweep_dir)
    if not runs:
        raise FileNotFoundError(
            f"no runs under {sweep_dir}: expected job directories with .hydra/overrides.yaml "
            "(a Hydra multirun's sweep directory, or one run's directory)"
        )
    if tune_lr:  # each variant at the optimizer.lr best on validation (selection.py)
        groups = selection.tune_lr(variants(runs, (*SEED_KEYS, selection.LR_KEY)))
    else:
        groups = variants(runs)
    sided, mode = alternative, None
    if baseline is not None:  # fail before writing anything
        baseline = resolve_variant(groups, baseline)
        stat_metric = stat_metric or default_stat_metric(runs)
        known = sorted({m for r in runs for m in r.metrics})
        if stat_metric not in known:
            raise ValueError(
                f"--stat-metric {stat_metric!r} is in no run's metrics.json; valid choices: "
                + ", ".join(known)
            )
        mode = metric_mode(stat_metric, runs)  # a one-sided test follows it (direction.py)
        sided = scipy_alternative(alternative, stat_metric, mode)
    out_dir = out_dir or sweep_dir / "compare"
    out_dir.mkdir(parents=True, exist_ok=True)
    columns, rows = summarise(groups)
    metric = metric or default_metric(runs)
    directions = {m: reading(metric_mode(m, runs)) for m in main_columns(columns, metric)}
    write_tables(columns, rows, out_dir, metric, directions)
    plot_curves(groups, metric, out_dir, title=sweep_dir.resolve().name)
    if baseline is not None and stat_metric is not None:  # both set above
        tests = significance(groups, baseline, stat_metric, alternative)
        write_significance(tests, baseline, stat_metric, sided, out_dir, mode)
    if html:
        from attnlab.compare.html_report import write_report

        sections = ["summary", "curves", *(["significance"] if baseline is not None else [])]
        variant_of = {run.path: name for name, group in groups.items() for run in group}
        title = f"sweep {sweep_dir.resolve().name}"
        write_report(out_dir, title, sections, runs, variant_of, baseline)
    return out_dir


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnlab-compare", description=__doc__.splitlines()[0].strip("`")
    )
    parser.add_argument(
        "sweep_dir", type=Path, nargs="+", help="a multirun's sweep directory (several: --ladder)"
    )
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
        "--stat-metric",
        default=None,
        help="metric tested (default: e.g. test/acc for val/acc); --ladder: the metric fitted "
        "(default: test/loss)",
    )
    parser.add_argument(
        "--alternative",
        choices=ALTERNATIVES,
        default="two-sided",
        help="better/worse: a one-sided test in the metric's direction (lower is better for "
        "losses); greater/less only where they mean better",
    )
    _add_ladder_arguments(parser)
    parser.add_argument(
        "--html",
        action="store_true",
        help="also write report.html: tables, curves, tests, runs and their configs on one page",
    )
    parser.add_argument(
        "--tune-lr",
        action="store_true",
        help="compare each variant at its optimizer.lr best on validation (mean over seeds)",
    )
    return parser


def _add_ladder_arguments(parser: argparse.ArgumentParser) -> None:
    ladder = parser.add_argument_group("scaling ladders (docs/compare_ladder.md)")
    ladder.add_argument(
        "--ladder", action="store_true", help="fit L(C) = E + A*C^-alpha per variant"
    )
    ladder.add_argument(
        "--budget",
        type=float,
        nargs="+",
        default=[],
        help="compute budgets (FLOPs) to extrapolate the multipliers to, e.g. 1e18",
    )
    ladder.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap samples (default 1000)"
    )
    ladder.add_argument(
        "--rung-key", default="ladder.rung", help="the override that names a run's rung"
    )
    ladder.add_argument(
        "--resample",
        choices=("pooled", "rung"),
        default="pooled",
        help="bootstrap: seed deviations pooled over a variant's rungs (default), or per rung",
    )


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.ladder:
        _main_ladder(parser, args)
        return
    if len(args.sweep_dir) > 1:
        parser.error("several SWEEP_DIRs are read only with --ladder; give one")
    args.sweep_dir = args.sweep_dir[0]
    try:
        out_dir = compare(
            args.sweep_dir,
            args.out,
            args.metric,
            args.baseline,
            args.stat_metric,
            args.alternative,
            args.tune_lr,
            args.html,
        )
    except (ValueError, FileNotFoundError) as error:  # the sweep, not the usage: one line
        parser.exit(2, f"attnlab-compare: error: {error}\n")
    except MissingExtraError as error:
        parser.exit(2, f"attnlab-compare: {error}\n")
    print((out_dir / "comparison.md").read_text())
    if args.baseline is not None:
        print((out_dir / "significance.md").read_text())
    print(_written(out_dir, args.html))


def _written(out_dir: Path, html: bool) -> str:
    page = f"; the page: {out_dir / 'report.html'}" if html else ""
    return f"Tables and plots in {out_dir}{page}"


def _main_ladder(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from attnlab.compare.ladder import compare_ladder

    if args.bootstrap < 100:
        parser.error(f"--bootstrap {args.bootstrap}: at least 100 samples for a 95% interval")
    try:
        out_dir = compare_ladder(
            args.sweep_dir,
            args.out,
            args.baseline,
            args.stat_metric,
            tuple(args.budget),
            args.bootstrap,
            args.rung_key,
            resample=args.resample,
            html=args.html,
        )
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    print((out_dir / "ladder.md").read_text())
    print(_written(out_dir, args.html))


if __name__ == "__main__":
    main()
