"""curves_<x>.png: a validation metric against step, tokens seen and wall time. A line per
variant is the mean over its seeds; the band around it spans their minimum to maximum."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from attnlab.compare.runs import Run

CURVE_AXES = {"step": "step", "tokens": "progress/tokens_seen", "time": "progress/wall_time_s"}
AXIS_LABELS = {"step": "optimiser step", "tokens": "tokens seen", "time": "wall time (s)"}
STAGES = {"val": "validation", "test": "test", "train": "training"}
NAMES = {
    "acc": "accuracy",
    "ppl": "perplexity",
    "bleu": "BLEU",
    "f1": "F1",
    "macro_f1": "macro F1",
    "exact_match": "exact match",
}


@dataclass
class Curve:
    """One variant's curve: x, and the mean, minimum and maximum over `seeds` seeds."""

    x: list[float]
    mean: list[float]
    low: list[float]
    high: list[float]
    seeds: int


def readable(metric: str) -> str:
    """`val/loss` -> "validation loss", `val/acc` -> "validation accuracy"."""
    stage, _, name = metric.rpartition("/")
    name = NAMES.get(name, name.replace("_", " "))
    return f"{STAGES.get(stage, stage)} {name}".strip()


def curves(groups: dict[str, list[Run]], column: str, metric: str) -> dict[str, Curve]:
    """Per variant, `metric` against `column` over its runs that did not fail."""
    out = {}
    for name, runs in groups.items():
        series = [
            [
                (_x(row, column), row[metric])
                for row in run.curve()
                if column in row and metric in row
            ]
            for run in runs
            if run.status != "failed"
        ]
        series = [s for s in series if s]
        if not series:
            continue
        length = min(len(s) for s in series)  # validations that every seed reached
        points = [[s[i] for s in series] for i in range(length)]
        out[name] = Curve(
            x=[statistics.fmean(x for x, _ in p) for p in points],
            mean=[statistics.fmean(y for _, y in p) for p in points],
            low=[min(y for _, y in p) for p in points],
            high=[max(y for _, y in p) for p in points],
            seeds=len(series),
        )
    return out


def _x(row: dict[str, float], column: str) -> float:
    # Lightning's loggers write `step` as the optimiser steps done *before* the batch that
    # logs: a validation after 10 steps is in the CSV at step 9. Drawn at 10.
    return row[column] + 1 if column == "step" else row[column]


def plot_curves(
    groups: dict[str, list[Run]], metric: str, out_dir: Path, title: str | None = None
) -> list[Path]:
    """One PNG per x axis (step, tokens seen, wall time): `metric`, a line per variant (mean
    over seeds) in a band from the seeds' minimum to maximum. `title`: the sweep's name."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    written = []
    for axis, column in CURVE_AXES.items():
        figure, ax = plt.subplots(figsize=(7.5, 4.8))
        drawn = curves(groups, column, metric)
        for name, curve in drawn.items():
            seeds = f"{curve.seeds} seed{'s' if curve.seeds > 1 else ''}"
            (line,) = ax.plot(
                curve.x, curve.mean, marker="o", markersize=3, label=f"{name} ({seeds})"
            )
            if curve.seeds > 1:
                ax.fill_between(curve.x, curve.low, curve.high, color=line.get_color(), alpha=0.2)
        ax.set_xlabel(AXIS_LABELS[axis])
        if axis == "step":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(readable(metric))
        heading = f"{readable(metric)} by {AXIS_LABELS[axis]}"
        ax.set_title(f"sweep {title}: {heading}" if title else heading, fontsize=10)
        ax.grid(alpha=0.3)
        if ax.lines:
            many = any(c.seeds > 1 for c in drawn.values())
            band = "; band: min to max" if many else ""
            ax.legend(fontsize=8, title=f"mean over seeds{band}", title_fontsize=8)
        path = out_dir / f"curves_{axis}.png"
        figure.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written
