"""The Markdown attnlab-compare writes (comparison.md, significance.md, ladder.md) as HTML, so
the page shows the tables the terminal shows: headings, paragraphs, pipe tables, `code` and
**bold**. Only that subset: the files are ours, not arbitrary Markdown."""

from __future__ import annotations

import html
import re

INLINE = [
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
]
# A numeric cell (e.g. `1,234.5678 ± 0.0012`, `2.3e-05`, `—`): right-aligned in tables.
NUMERIC = re.compile(r"^[-+]?[\d,.]+(e[+-]?\d+)?( ± [\d,.]+(e[+-]?\d+)?)?$|^—$")


def inline(text: str) -> str:
    out = html.escape(text, quote=False)
    for pattern, replacement in INLINE:
        out = pattern.sub(replacement, out)
    return out


def _cells(line: str) -> list[str]:
    """The cells of a pipe-table row; `\\|` is a pipe inside a cell."""
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", inner)]


def table(lines: list[str], css_class: str = "") -> str:
    """A pipe table (header, separator, rows) as <table>; numeric cells carry class "num"."""
    header, rows = _cells(lines[0]), [_cells(line) for line in lines[2:]]
    head = "".join(f"<th>{inline(cell)}</th>" for cell in header)

    def cell(text: str) -> str:
        kind = ' class="num"' if NUMERIC.match(text) else ""
        return f"<td{kind}>{inline(text)}</td>"

    body = "".join("<tr>" + "".join(map(cell, row)) + "</tr>\n" for row in rows)
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<table{attribute}>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>"


def markdown_to_html(text: str, css_class: str = "") -> str:
    """Headings (# to ###, shifted one level down: the page has its own h1), paragraphs and
    tables of `text`; tables get `css_class`."""
    blocks: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("|"):
            end = i
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            blocks.append(table(lines[i:end], css_class))
            i = end
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 1, 4)
            blocks.append(f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>")
            i += 1
        else:
            end = i
            while end < len(lines) and lines[end].strip() and not lines[end].startswith(("|", "#")):
                end += 1
            blocks.append(f"<p>{inline(' '.join(lines[i:end]))}</p>")
            i = end
    return "\n".join(blocks)
