"""`attnlab-compare ... --html`: the comparison as one self-contained page, report.html.

The page holds what the other outputs hold, in one place to look at or send: the summary
tables (comparison.md), the curves with their seed bands, the significance tests with Holm's
correction, a ladder's fitted laws and compute multipliers with their plots, and every run:
its variant, seed and status, a link to its folder, and how its config differs from the
reference run's (the baseline's first finished run). Plots are inlined as base64 PNG and the
style sheet is inline: nothing is fetched, from the network or from disk, when it opens.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attnlab.compare.config_diff import differences, reference_run, run_config
from attnlab.compare.html_markdown import markdown_to_html
from attnlab.compare.runs import Run

REPORT = "report.html"
# name -> (heading, Markdown files, figures), in page order
SECTIONS = {
    "summary": ("Summary", ("comparison.md",), ()),
    "curves": ("Curves", (), ("curves_step.png", "curves_tokens.png", "curves_time.png")),
    "significance": ("Significance", ("significance.md",), ()),
    "ladder": (
        "Scaling ladder",
        ("ladder.md",),
        ("loss_vs_compute.png", "multiplier_vs_compute.png"),
    ),
}
DOWNLOADS = ("comparison.csv", "significance.csv", "ladder.csv", "ladder_runs.csv")

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1d1d1f; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.6em; vertical-align: top; }
th { background: #f3f3f3; text-align: left; } td.num { text-align: right;
     font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f3f3f3; padding: 0 0.2em; border-radius: 3px; }
figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #eee; }
.meta { color: #666; } ul.diff { margin: 0; padding-left: 1.2em; }
"""


def figure(path: Path) -> str:
    """A PNG written by attnlab-compare, inlined."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = html.escape(path.stem.replace("_", " "))
    return (
        f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
        f"<figcaption>{name}</figcaption></figure>"
    )


def section(out_dir: Path, name: str) -> str:
    heading, documents, figures = SECTIONS[name]
    parts = [f'<section id="{name}">', f"<h2>{heading}</h2>"]
    for document in documents:
        text = (out_dir / document).read_text()
        parts.append(f'<div class="scroll">{markdown_to_html(text, name)}</div>')
    parts += [figure(out_dir / f) for f in figures if (out_dir / f).is_file()]
    return "\n".join([*parts, "</section>"])


def _value(value: Any) -> str:
    return html.escape(value if isinstance(value, str) else json.dumps(value))


def _diff_cell(run: Run, reference: Run | None, reference_config: dict[str, Any] | None) -> str:
    if reference is None or reference_config is None:
        return "—"
    if run.path == reference.path:
        return "the reference"
    config = run_config(run.path)
    if config is None:
        return "no .hydra/config.yaml"
    changed = differences(config, reference_config)
    if not changed:
        return "same config"
    items = "".join(
        f"<li><code>{html.escape(k)}</code>: {_value(old)} → {_value(new)}</li>"
        for k, old, new in changed
    )
    return f'<ul class="diff">{items}</ul>'


def runs_section(
    runs: Sequence[Run], variant_of: dict[Path, str], baseline: str | None, out_dir: Path
) -> str:
    """Every run: variant, seed, status, its folder (a relative link), its config diff."""
    reference = reference_run(list(runs), variant_of, baseline)
    reference_config = run_config(reference.path) if reference else None
    where = f"<code>{html.escape(reference.path.name)}</code>" if reference else "none"
    rows = []
    for run in runs:
        link = html.escape(os.path.relpath(run.path, out_dir))
        cells = [
            html.escape(variant_of.get(run.path, "— (not kept)")),
            html.escape(run.overrides.get("seed", "—")),
            html.escape(run.status + (f": {run.error}" if run.error else "")),
            f'<a href="{link}/">{html.escape(run.path.name)}</a>',
            _diff_cell(run, reference, reference_config),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(
        f"<th>{h}</th>" for h in ("variant", "seed", "status", "folder", "config vs reference")
    )
    return (
        '<section id="runs">\n<h2>Runs</h2>\n'
        f"<p>Configs compared with the reference run {where} "
        "(<code>.hydra/config.yaml</code>, run-folder paths left out).</p>\n"
        f'<div class="scroll"><table class="runs">\n<thead><tr>{header}</tr></thead>\n'
        f"<tbody>\n{chr(10).join(rows)}\n</tbody></table></div>\n</section>"
    )


def write_report(
    out_dir: Path,
    title: str,
    sections: Sequence[str],
    runs: Sequence[Run],
    variant_of: dict[Path, str],
    baseline: str | None = None,
) -> Path:
    """report.html in `out_dir` from the `sections` just written there (SECTIONS' names)."""
    downloads = [f'<a href="{name}">{name}</a>' for name in DOWNLOADS if (out_dir / name).is_file()]
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">attnlab-compare, {stamp}; {len(runs)} runs; baseline: '
        f"{html.escape(baseline or 'none')}. Tables as CSV: {', '.join(downloads)}.</p>",
        *(section(out_dir, name) for name in sections),
        runs_section(runs, variant_of, baseline, out_dir),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        '<link rel="icon" href="data:,">\n'  # no favicon request
        f"<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
    path = out_dir / REPORT
    path.write_text(page, encoding="utf-8")
    return path
