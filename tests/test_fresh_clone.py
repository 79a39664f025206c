"""The README's quick start in a fresh clone with no ../shared/data beside it and no internet:
tests that need a real dataset skip with one line naming the file and how to get it, and fail
instead under ATTNLAB_REQUIRE_DATA=1 (what CI sets). Slow: a clone and three subprocesses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# One test of each way a test meets real data: a fixture (sst2_data, shakespeare_data), the
# needs_data marker, require() inside the test body, a module-scoped fixture (Multi30k), and a
# config whose data module stops on MissingDataError (the makereport hook), plus tests in the
# same files that need no data and must still pass.
SUBSET = [
    "tests/data/test_sst2.py::test_missing_files_are_named",
    "tests/data/test_sst2.py::test_a_file_without_the_header_is_refused",
    "tests/data/test_sst2.py::test_given_tokenizer_is_used_exactly",
    "tests/data/test_shakespeare.py::test_splits_and_vocabulary_match_nanogpt",
    "tests/data/test_download.py::test_catalog_checksums_match_the_real_data",
    "tests/data/test_download.py::test_zip_member_is_extracted_and_checked",
    "tests/test_translate.py::test_multi30k_smoke_run_then_translate",
    "tests/test_configs.py::test_option_composes_and_instantiates[data=wikitext2]",
    "tests/test_configs.py::test_option_composes_and_instantiates[data=sort]",
]
NEED_DATA = 5


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed HEAD cloned into an empty folder, run with this venv but the clone's code."""
    path = tmp_path_factory.mktemp("empty") / "attnlab"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(path)], check=True, timeout=120)
    # The editable install maps attnlab.conf onto this checkout's conf/; the clone's own conf/
    # must win, as src/attnlab/conf (what the package-dir mapping makes of it in a wheel).
    (path / "src" / "attnlab" / "conf").symlink_to(path / "conf", target_is_directory=True)
    return path


def _env(clone: Path, data_dir: Path, require: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ATTNLAB_REQUIRE_DATA", "PYTHONPATH")}
    env.update(
        PYTHONPATH=f"{clone / 'src'}{os.pathsep}{clone}",
        ATTNLAB_DATA_DIR=str(data_dir),
        WANDB_MODE="offline",
        HF_HUB_OFFLINE="1",
    )
    if require:
        env["ATTNLAB_REQUIRE_DATA"] = "1"
    return env


def _make(clone: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`make ...` in the clone with this session's venv standing in for `make install`."""
    bin_dir = Path(sys.executable).parent
    return subprocess.run(
        # --no-print-directory: under CI's own `make`, make[1] would add "Leaving directory"
        # after pytest's summary line
        ["make", "--no-print-directory", "-o", ".venv/.install-stamp", f"BIN={bin_dir}", *args],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_fresh_clone_trains_and_skips_real_data_tests(clone: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no_data"
    empty.mkdir()
    env = _env(clone, empty, require=False)
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import attnlab.conf as c, attnlab as a; print(a.__file__, c.__file__)",
        ],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(Path(p).is_relative_to(clone) for p in where), where

    # `make train`, shortened: the toy task needs no data.
    tiny = [
        "model.d_model=32", "model.n_heads=2", "model.d_ff=64", "model.n_encoder_layers=1",
        "model.n_decoder_layers=1", "data.num_train=128", "data.num_val=32", "data.num_test=32",
        "trainer.max_epochs=1", "trainer.accelerator=cpu", "callbacks.rich_progress_bar=null",
        "print_config=false", f"hydra.run.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    train = _make(clone, env, "train", f"ARGS={' '.join(tiny)}")
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.json").is_file()

    # `make test` on the subset: real-data tests skip, one line each, naming file and remedy.
    args = f"-p no:cacheprovider -q -rs {' '.join(SUBSET)}"
    result = _make(clone, env, "test", f"PYTEST_ARGS={args}")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert re.search(rf"\b{len(SUBSET) - NEED_DATA} passed, {NEED_DATA} skipped\b", summary), out
    assert "failed" not in summary and "error" not in summary
    skips = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert len(skips) == NEED_DATA, skips
    for line in skips:
        assert f"real data missing: {empty}/" in line, line
        assert f"`ATTNLAB_DATA_DIR={empty.resolve()} make data NAMES=" in line, line

    # The same with ATTNLAB_REQUIRE_DATA=1 (CI): each fails, naming the missing file.
    required = _make(clone, _env(clone, empty, require=True), "test", f"PYTEST_ARGS={args}")
    out = required.stdout + required.stderr
    assert required.returncode != 0, out[-4000:]
    summary = required.stdout.strip().splitlines()[-1]
    assert f"{len(SUBSET) - NEED_DATA} passed" in summary and "skipped" not in summary, summary
    failed = re.findall(r"(\d+) (?:failed|errors?)", summary)
    assert sum(map(int, failed)) == NEED_DATA, summary
    assert f"ATTNLAB_REQUIRE_DATA=1 but real data missing: {empty}/sst2/train.tsv" in out
    assert f"ATTNLAB_REQUIRE_DATA=1 but real data missing: {empty}/multi30k/" in out
    assert f"ATTNLAB_REQUIRE_DATA=1 but real data missing: {empty}/wikitext-2/train.txt" in out
