"""comparison.md / comparison.csv: per variant, runs done / failed / running and mean ± std over
seeds of the final metrics and run statistics."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Any

from attnlab.compare.runs import Run

# The metrics a comparison shows: final validation and test, and lm-evaluation-harness tasks
# (attnlab-eval lm_eval.tasks=[...] adds lm_eval/<task>/<metric> to a run's metrics.json).
METRIC_STAGES = ("val", "test", "lm_eval")
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
    metric_names = [m for m in metric_names if m.split("/")[0] in METRIC_STAGES]
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


# comparison.md reads in a terminal: no line wider than this.
WIDTH = 100
HEADINGS = {
    "params": "params",
    "params_non_embedding": "params (non-emb.)",
    "flops_per_token": "FLOPs/token",
    "tokens_per_sec": "tokens/s",
    "wall_time_s": "wall time (s)",
}


def _format(value: Any, markdown: bool) -> str:
    if value is None:
        return "—" if markdown else ""
    if isinstance(value, tuple):
        mean, std = value
        if not markdown:
            return f"{mean}±{std}"
        digits = 4 if abs(mean) < 100 else 0
        if std > 0:  # as precise as the spread says: 42.1 ± 5.2 s, not 42.1000 ± 5.2467
            digits = max(0, min(digits, 1 - math.floor(math.log10(std))))
        # one seed, or a count every seed shares (params): the value alone
        return f"{mean:,.{digits}f}" if std == 0 else f"{mean:,.{digits}f} ± {std:,.{digits}f}"
    return str(value)


def _runs(row: dict[str, Any]) -> str:
    """E.g. `3 done`, or `2 done, 1 failed, 1 running`."""
    counts = [f"{row[status]} {status}" for status in ("failed", "running") if row[status]]
    return ", ".join([f"{row['done']} done", *counts])


def _table(header: list[str], cells: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(" --- " for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in cells),
    ]


def markdown_tables(
    columns: list[str],
    rows: list[dict[str, Any]],
    main: list[str],
    directions: dict[str, str] | None = None,
) -> str:
    """A short main table (variant, runs, the `main` metrics), then the other columns in
    tables of their own, each row no wider than WIDTH where the cells allow; variants are
    numbered (#) so that the detail tables need not repeat their names."""
    numbers = [str(i) for i in range(1, len(rows) + 1)]
    main = [c for c in main if c in columns]
    by_reading: dict[str, list[str]] = {}  # e.g. "lower is better": [val/loss, test/loss]
    for column, reading in (directions or {}).items():
        if reading and column in main:
            by_reading.setdefault(reading, []).append(column)
    notes = "; ".join(f"{' and '.join(c)}: {r}" for r, c in by_reading.items())
    lines = ["Mean ± sd over each variant's seeds (done runs only).", *([notes] if notes else [])]
    lines.append("")
    lines += _table(
        ["#", "variant", "runs", *main],
        [
            [n, row["variant"], _runs(row), *(_format(row[c], True) for c in main)]
            for n, row in zip(numbers, rows, strict=True)
        ],
    )
    rest = [c for c in columns if c not in ("variant", "done", "failed", "running", *main)]

    def detail(chunk: list[str]) -> list[str]:
        return _table(
            ["#", *(HEADINGS.get(c, c) for c in chunk)],
            [
                [n, *(_format(row[c], True) for c in chunk)]
                for n, row in zip(numbers, rows, strict=True)
            ],
        )

    chunks: list[list[str]] = []
    for column in rest:  # in column order, as many to a table as fit in WIDTH
        if chunks and max(map(len, detail([*chunks[-1], column]))) <= WIDTH:
            chunks[-1].append(column)
        else:
            chunks.append([column])
    for chunk in chunks:
        lines += ["", *detail(chunk)]
    return "\n".join(lines) + "\n"


def main_columns(columns: list[str], metric: str | None) -> list[str]:
    """The main table's metrics: `metric` (the optimised one) and its test counterpart."""
    metric = metric or "val/loss"
    test = "test/" + metric.split("/", 1)[-1]
    return [c for c in (metric, test) if c in columns]


def write_tables(
    columns: list[str],
    rows: list[dict[str, Any]],
    out_dir: Path,
    metric: str | None = None,
    directions: dict[str, str] | None = None,
) -> None:
    """comparison.md (a main table on `metric` and detail tables) and comparison.csv (every
    column, mean and std apart); `directions`: e.g. {"val/loss": "lower is better"}."""
    markdown = markdown_tables(columns, rows, main_columns(columns, metric), directions)
    (out_dir / "comparison.md").write_text(markdown)
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
