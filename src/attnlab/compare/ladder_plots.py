"""loss_vs_compute.png (seeds, rung means, fitted laws with their bootstrap band) and
multiplier_vs_compute.png (each variant's compute multiplier against the baseline, with its 95%
band) for `attnlab-compare --ladder`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from attnlab.compare.scaling_fit import ALPHA, LAW, multiplier, percentile_interval

if TYPE_CHECKING:
    from attnlab.compare.ladder_fit import VariantFit


def _unit(metric: str) -> str:
    return f"{metric} (nats per token)" if metric.endswith("loss") else metric


def plot_ladder(
    fits: list[VariantFit],
    metric: str,
    baseline: str | None,
    budgets: tuple[float, ...],
    out_dir: Path,
) -> list[Path]:
    """loss_vs_compute.png, and multiplier_vs_compute.png against a baseline; their paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    lo_c = min(r.compute.min() for f in fits for r in f.rungs)
    hi_c = max([*(r.compute.max() for f in fits for r in f.rungs), *budgets])
    grid = np.geomspace(lo_c / 1.5, hi_c * 1.5, 200)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    written = [_plot_loss(fits, metric, budgets, grid, colors, out_dir)]
    base = next((f for f in fits if f.name == baseline), None)
    if base is not None and len(fits) >= 2:
        written.append(_plot_multiplier(fits, base, budgets, grid, colors, out_dir))
    return written


def _plot_loss(
    fits: list[VariantFit],
    metric: str,
    budgets: tuple[float, ...],
    grid: np.ndarray,
    colors: list[str],
    out_dir: Path,
) -> Path:
    """Seeds, rung means ± std and each variant's law with its bootstrap band."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    figure, ax = plt.subplots(figsize=(7.5, 5))
    for i, fit in enumerate(fits):
        color = colors[i % len(colors)]
        for rung in fit.rungs:
            ax.scatter(rung.compute, rung.values, s=12, color=color, alpha=0.45, linewidths=0)
        means = [r.values.mean() for r in fit.rungs]
        spread = [r.values.std(ddof=1) if len(r.values) > 1 else 0.0 for r in fit.rungs]
        ax.errorbar(
            [r.mean_compute for r in fit.rungs],
            means,
            yerr=spread,
            fmt="o",
            color=color,
            markeredgecolor="black",
            capsize=3,
            zorder=3,
        )
        e, a, alpha = (float(v[0]) for v in (fit.law.e, fit.law.A, fit.law.alpha))
        label = f"{fit.name}: E={e:.3g}, A={a:.3g}, {ALPHA}={alpha:.3g}"
        ax.plot(grid, fit.law.loss(grid)[0], color=color, label=label)
        band_lo, band_hi = percentile_interval(fit.boot.loss(grid))
        ax.fill_between(grid, band_lo, band_hi, color=color, alpha=0.15, linewidth=0)
    for budget in budgets:
        ax.axvline(budget, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute C (FLOPs)")
    ax.set_ylabel(_unit(metric))
    # Losses span well under a decade: a few plain numbers on the log axis, not 2 x 10^0.
    low, high = ax.get_ylim()
    ticks = np.unique(np.round(np.geomspace(low, high, 7)[1:-1], 2))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_yticks(ticks, [f"{t:.2f}" for t in ticks])
    ax.set_ylim(low, high)
    ax.set_title(
        f"Loss vs compute: {LAW} per variant\n"
        "(dots: seeds; circles: rung mean ± std; band: 95% bootstrap over seeds)",
        fontsize=10,
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    path = out_dir / "loss_vs_compute.png"
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


def _plot_multiplier(
    fits: list[VariantFit],
    base: VariantFit,
    budgets: tuple[float, ...],
    grid: np.ndarray,
    colors: list[str],
    out_dir: Path,
) -> Path:
    """Each variant's compute multiplier against `base`, with its 95% band."""
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7.5, 5))
    shown = []
    for i, fit in enumerate(fits):
        if fit is base:
            continue
        color = colors[i % len(colors)]
        point = multiplier(fit.law, base.law, grid)[0]
        band_lo, band_hi = percentile_interval(multiplier(fit.boot, base.boot, grid))
        ax.plot(grid, np.where(np.isfinite(point), point, np.nan), color=color, label=fit.name)
        # An infinite end (the baseline never reaches the loss) is drawn at the top edge.
        ax.fill_between(grid, band_lo, np.minimum(band_hi, 1e6), color=color, alpha=0.2)
        shown += [v for v in (*point, *band_lo, *band_hi) if np.isfinite(v) and v > 0]
        top = fit.rungs[-1].mean_compute
        ax.scatter([top], [fit.multipliers[0][0]], color=color, edgecolor="black", zorder=3)
    ax.axhline(1.0, color="black", linewidth=1, label=f"baseline ({base.name})")
    top_c = max(f.rungs[-1].mean_compute for f in fits)
    ax.axvline(top_c, color="grey", linestyle="--", linewidth=1, label="largest rung")
    for budget in budgets:
        ax.axvline(budget, color="grey", linestyle=":", linewidth=1, label=f"budget {budget:.3g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    if shown:
        ax.set_ylim(max(min(shown) / 1.5, 1e-3), min(max(shown) * 1.5, 1e3))
    ax.set_xlabel("training compute C of the variant (FLOPs)")
    ax.set_ylabel("compute multiplier (baseline's compute / variant's)")
    ax.set_title(
        f"Compute multiplier against {base.name}\n(> 1: variant better; band: 95% bootstrap)",
        fontsize=10,
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    path = out_dir / "multiplier_vs_compute.png"
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path
