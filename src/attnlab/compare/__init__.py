"""`attnlab-compare SWEEP_DIR`: tables, curves and significance tests over a sweep's runs.

runs.py reads the sweep, tables.py summarises it, plots.py draws the curves, significance.py
tests variants against a baseline, cli.py puts them together (see its docstring for the outputs).
"""

from attnlab.compare.cli import compare, main
from attnlab.compare.runs import Run, find_runs, read_run, variants
from attnlab.compare.significance import significance
from attnlab.compare.tables import summarise

__all__ = [
    "Run",
    "compare",
    "find_runs",
    "main",
    "read_run",
    "significance",
    "summarise",
    "variants",
]
