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

Reading: ladder_reading.py; fitting: ladder_fit.py; writing: ladder_report.py, ladder_plots.py.
Writes ladder.md, ladder.csv (one row per variant), ladder_runs.csv (every run read: rung, seed,
lr, compute, metric, whether it was kept), loss_vs_compute.png and multiplier_vs_compute.png.
"""

from __future__ import annotations

import math
from pathlib import Path

from attnlab.compare.ladder_fit import RESAMPLING, fit_ladder
from attnlab.compare.ladder_reading import RUNG_KEY, read_ladder
from attnlab.compare.ladder_report import write_ladder
from attnlab.compare.significance import resolve_variant


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
    html: bool = False,
) -> Path:
    """Read, fit, write ladder.md / ladder.csv / plots (and, with `html`, report.html);
    returns the output directory."""
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
    if html:
        from attnlab.compare.html_report import write_report

        kept = {path: fit.name for fit in fits for rung in fit.rungs for path in rung.paths}
        title = "scaling ladder " + ", ".join(d.resolve().name for d in sweep_dirs)
        write_report(out_dir, title, ["ladder"], runs, kept, baseline)
    return out_dir
