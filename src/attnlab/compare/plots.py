"""curves_<x>.png: a validation metric against step, tokens seen and wall time, a line per
variant (the mean over its seeds)."""

from __future__ import annotations

import statistics
from pathlib import Path

from attnlab.compare.runs import Run

CURVE_AXES = {"step": "step", "tokens": "progress/tokens_seen", "time": "progress/wall_time_s"}


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
