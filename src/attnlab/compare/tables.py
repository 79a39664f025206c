"""comparison.md / comparison.csv: per variant, runs done / failed / running and mean ± std over
seeds of the final metrics and run statistics."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Any

from attnlab.compare.runs import Run

SUMMARY_FIELDS = {  # column -> where it is in metrics.json
    "params": ("parameters", "total"),
    "params_non_embedding": ("parameters", "non_embedding"),
    "flops_per_token": ("flops_per_token",),
    "tokens_per_sec": ("tokens_per_sec",),
    "wall_time_s": ("wall_time_s",),
}


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
