"""`attnlab-compare ... --html`: one self-contained page, opened in a real headless Chromium
(tests/browser.py): it loads with no console message, its tables hold the numbers of
comparison.csv, significance.csv and ladder.csv, its plots render, it fetches nothing, and
its links lead to the run folders."""

from __future__ import annotations

import csv
import io
import random
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

from attnlab.compare.cli import main
from attnlab.compare.tables import HEADINGS
from tests.browser import chromium  # noqa: F401  (a fixture)
from tests.test_compare_report import VARIANTS, write_run
from tests.test_ladder_fit import planted, write_ladder


def write_sweep(root: Path) -> Path:
    """Two variants x three seeds (tests/test_compare_report.py's runs), each with its
    config, and one failed run."""
    rng = random.Random()
    for job, (variant, seed) in enumerate((v, s) for v in VARIANTS for s in (1, 2, 3)):
        folder = root / str(job)
        write_run(folder, variant, seed, rng)
        config = "".join(f"{o.replace('=', ': ', 1)}\n" for o in variant.split())
        (folder / ".hydra" / "config.yaml").write_text(
            f"{config}seed: {seed}\ntrainer:\n  max_steps: 30\npaths:\n  output_dir: {folder}\n"
        )
    failed = root / "6"
    (failed / ".hydra").mkdir(parents=True)
    overrides = "".join(f"- {o}\n" for o in VARIANTS[1].split())
    (failed / ".hydra" / "overrides.yaml").write_text(f"{overrides}- seed=4\n")
    (failed / "failure.json").write_text('{"error": "RuntimeError: out of memory"}')
    return root


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("html")
    sweep = write_sweep(root / "sweep")
    main([str(sweep), "--baseline", VARIANTS[0], "--html"])
    ladder = root / "ladder"
    write_ladder(
        ladder, {"learned": planted(1.8, 1e12**0.3, 0.3), "rope": planted(1.8, 1e12**0.3, 0.3, 2.0)}
    )
    dirs = [str(ladder / "small"), str(ladder / "large")]
    main(["--ladder", *dirs, "--baseline", "model.pos=learned", "--bootstrap", "100", "--html"])
    return {"sweep": sweep / "compare", "ladder": ladder / "small" / "compare"}


def test_the_page_is_one_file_that_fetches_nothing(pages: dict[str, Path]) -> None:
    for folder in pages.values():
        page = (folder / "report.html").read_text()
        references = re.findall(r'(?:src|href)="([^"]*)"', page)
        assert references and not [r for r in references if re.match(r"(https?:)?//", r)]
        assert all(r.startswith("data:") for r in re.findall(r'src="([^"]*)"', page))
        assert "<script" not in page and "@import" not in page


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def tables(browser: Any, section: str) -> list[list[list[str]]]:
    """The tables of a section as the browser renders them: rows of cell texts."""
    script = (
        f"return [...document.querySelectorAll('#{section} table')].map(t => "
        "[...t.rows].map(r => [...r.cells].map(c => c.innerText.trim())))"
    )
    return browser.execute_script(script)


def shown(text: str) -> tuple[float, float | None, float]:
    """`1,234.5678 ± 0.0012` -> (mean, std, half a unit of the last digit shown)."""
    parts = [p.replace(",", "") for p in text.split(" ± ")]
    decimals = len(parts[0].partition(".")[2]) if "e" not in parts[0] else 3
    return float(parts[0]), float(parts[1]) if len(parts) > 1 else None, 0.5 * 10**-decimals


def assert_close(text: str, mean: str, std: str | None = None) -> None:
    value, spread, unit = shown(text)
    tolerance = unit * max(1.0, abs(float(mean))) if "e" in text else unit
    assert abs(value - float(mean)) <= tolerance + 1e-12, (text, mean)
    if spread is not None and std is not None:
        assert abs(spread - float(std)) <= unit + 1e-12, (text, std)


def check_loaded(browser: Any, page: Path) -> None:
    browser.get(page.as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    assert browser.get_log("browser") == []  # no error, warning or message in the console
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert [name for name in fetched if not name.startswith("data:")] == []


def check_plots(browser: Any, count: int) -> None:
    from PIL import Image
    from selenium.webdriver.common.by import By

    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) == count
    for image in images:
        assert (
            browser.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth", image
            )
            > 300
        )
        shot = Image.open(io.BytesIO(image.screenshot_as_png)).convert("RGB")
        colours = shot.getcolors(maxcolors=1 << 16) or []
        assert shot.width > 300 and len(colours) > 20  # lines, bands, text: not a blank box


def test_the_sweep_page_in_chromium(chromium: Any, pages: dict[str, Path]) -> None:  # noqa: F811
    folder = pages["sweep"]
    check_loaded(chromium, folder / "report.html")
    rows = read_csv(folder / "comparison.csv")
    by_heading = {HEADINGS.get(c, c): c for c in HEADINGS} | {c: c for c in rows[0]}
    main_table, *details = tables(chromium, "summary")
    assert [r[1] for r in main_table[1:]] == [row["variant"] for row in rows]
    checked = 0
    for table in (main_table, *details):
        header = table[0]
        for cells in table[1:]:
            row = rows[int(cells[0]) - 1]
            for heading, text in zip(header, cells, strict=True):
                column = by_heading.get(heading, heading)
                if f"{column}_mean" in row and text != "—":
                    assert_close(text, row[f"{column}_mean"], row[f"{column}_std"])
                    checked += 1
    filled = [value for row in rows for key, value in row.items() if key.endswith("_mean")]
    assert checked == len(filled) == len(rows) * (len(rows[0]) - 4) // 2  # every number shown

    significance = read_csv(folder / "significance.csv")
    welch, paired = tables(chromium, "significance")
    for table, test in ((welch, "welch"), (paired, "paired")):
        header, cells = table[0], table[1]
        assert cells[0] == significance[0]["variant"]
        assert_close(cells[header.index("p")], significance[0][f"{test}_p"])
        assert_close(cells[header.index("p (Holm)")], significance[0][f"{test}_p_holm"])
    check_plots(chromium, 3)

    (runs,) = tables(chromium, "runs")
    assert len(runs) == 1 + 7 and "failed: RuntimeError: out of memory" in runs[-1][2]
    assert runs[1][4] == "the reference" and "seed: 1 → 2" in runs[2][4]
    assert "model.pos: rope → sinusoidal" in runs[4][4] and "output_dir" not in str(runs)
    links = chromium.execute_script(
        "return [...document.querySelectorAll('#runs a')].map(a => a.href)"
    )
    folders = [Path(unquote(urlparse(link).path)) for link in links]
    assert folders == sorted(folder.parent.glob("[0-9]"), key=lambda p: int(p.name))


def test_the_ladder_page_in_chromium(chromium: Any, pages: dict[str, Path]) -> None:  # noqa: F811
    folder = pages["ladder"]
    check_loaded(chromium, folder / "report.html")
    fits = {row["variant"]: row for row in read_csv(folder / "ladder.csv")}
    laws, multipliers, _rungs = tables(chromium, "ladder")
    for cells in laws[1:]:
        e = cells[laws[0].index("E [95% CI]")]
        assert_close(e.split(" [")[0], fits[cells[0]]["E"])
    (rope,) = multipliers[1:]
    assert rope[0] == "model.pos=rope"
    assert_close(rope[1].split(" [")[0], fits["model.pos=rope"]["multiplier_top"])
    check_plots(chromium, 2)
