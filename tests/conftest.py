"""Shared fixtures: compose configs the way `attnlab-train` does, but small and in tmp dirs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

# A model and data small enough that a training run takes seconds on 2 CPU cores.
TINY_SETUP = [
    "model.d_model=32",
    "model.n_heads=2",
    "model.d_ff=64",
    "model.n_encoder_layers=1",
    "model.n_decoder_layers=1",
    "data.num_train=256",
    "data.num_val=64",
    "data.num_test=64",
    "data.batch_size=32",
    "data.max_len=8",
    "trainer.accelerator=cpu",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "print_config=false",
]
TINY = [*TINY_SETUP, "trainer.max_epochs=1"]


ROOT = Path(__file__).resolve().parents[1]


def default_data_dir(environ: dict[str, str] | os._Environ[str], root: Path) -> Path:
    """Real datasets: $ATTNLAB_DATA_DIR (CI points it at ../shared/data), else ../shared/data
    where it exists, else ./data: where `make data` puts them without ATTNLAB_DATA_DIR."""
    if environ.get("ATTNLAB_DATA_DIR"):
        return Path(environ["ATTNLAB_DATA_DIR"]).resolve()
    shared = root.parent / "shared" / "data"
    return (shared if shared.is_dir() else root / "data").resolve()


DATA_DIR = default_data_dir(os.environ, ROOT)
# Commands run by tests (attnlab-train in a subprocess) read the same data directory.
os.environ.setdefault("ATTNLAB_DATA_DIR", str(DATA_DIR))
# Tests never download (a missing dataset skips the test instead); a local server is allowed.
os.environ["ATTNLAB_OFFLINE"] = "1"
# Under pytest-xdist (`make test` runs `-n auto`) the workers share the cores: each one, and the
# commands it runs, gets its share of intra-op threads. Oversubscribed OpenMP threads spin-wait
# for a core (tests/models/conftest.py), which made the suite slower, not faster.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    import torch

    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    _threads = max(1, (_cores or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    torch.set_num_threads(_threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))
# Tests that need a real dataset skip when it is missing (a fresh clone, offline), one line naming
# the file; with ATTNLAB_REQUIRE_DATA=1 (CI) they fail instead, so nothing is skipped unseen.
REQUIRE_DATA = os.environ.get("ATTNLAB_REQUIRE_DATA", "") not in ("", "0")
# The one command that puts the data where these tests look (`make data` alone fills ./data).
GET_DATA = "get it with `ATTNLAB_DATA_DIR={data_dir} make data NAMES='{names}'`"


def require_data(*names: str, files: tuple[str, ...] = ()) -> Path:
    """DATA_DIR when the named datasets (attnlab.data.catalog: shakespeare, wikitext2, sst2,
    multi30k) and `files` (relative to it; a .gz variant counts) are there; else skip the test
    with one line naming the first missing file, or fail under ATTNLAB_REQUIRE_DATA=1."""
    from attnlab.data.catalog import DATASETS, missing

    lost = [str(path) for path in missing(names, DATA_DIR)]
    lost += [
        str(DATA_DIR / f)
        for f in files
        if not ((DATA_DIR / f).is_file() or (DATA_DIR / f"{f}.gz").is_file())
    ]
    if lost:
        wanted = " ".join(names) or " ".join(
            name
            for name, entries in DATASETS.items()
            if any(f.startswith(e.path.split("/")[0] + "/") for e in entries for f in files)
        )
        more = f" (+{len(lost) - 1} more)" if len(lost) > 1 else ""
        get = GET_DATA.format(data_dir=DATA_DIR, names=wanted)
        message = f"real data missing: {lost[0]}{more}; {get}"
        if REQUIRE_DATA:
            pytest.fail(f"ATTNLAB_REQUIRE_DATA=1 but {message}", pytrace=False)
        pytest.skip(message)
    return DATA_DIR


def _catalog_paths() -> set[Path]:
    """Every real data file attnlab knows (attnlab.data.catalog), as it may lie in DATA_DIR:
    plain, .gz, or uncompressed for a .gz."""
    from attnlab.data.catalog import DATASETS

    paths = set()
    for entries in DATASETS.values():
        for entry in entries:
            local = (DATA_DIR / entry.path).resolve()
            paths |= {local, local.with_name(local.name + ".gz"), local.with_suffix("")}
    return paths


def _missing_real_file(error: BaseException | None) -> Path | None:
    """The file of the data catalog that a MissingDataError (in `error`'s chain) says is missing
    from DATA_DIR. Any other missing path (a loader looking for a wrong name) is a failure."""
    from attnlab.data.loading.download import MissingDataError

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        path = getattr(error, "path", None)
        if isinstance(error, MissingDataError) and path is not None:
            path = Path(path).resolve()
            if path in _catalog_paths() and not path.is_file():
                return path
        error = error.__cause__ or error.__context__
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A test (or fixture) that stops on a real data file missing from DATA_DIR skips with one
    line naming it, as require_data does; under ATTNLAB_REQUIRE_DATA=1 it fails, saying so. Tests
    that build data from configs (experiments, the model x data matrix) need no marker."""
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is None or report.skipped:
        return
    path = _missing_real_file(call.excinfo.value)
    if path is None:
        return
    top = path.relative_to(DATA_DIR).parts[0]
    names = {"tinyshakespeare": "shakespeare", "wikitext-2": "wikitext2"}.get(top, top)
    message = f"real data missing: {path}; {GET_DATA.format(data_dir=DATA_DIR, names=names)}"
    if REQUIRE_DATA:
        report.longrepr = f"ATTNLAB_REQUIRE_DATA=1 but {message}\n\n{report.longreprtext}"
        return
    report.outcome = "skipped"
    report.longrepr = (str(item.path), (item.location[1] or 0) + 1, f"Skipped: {message}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """`@pytest.mark.needs_data("sst2", ...)`: the test runs only with those datasets present."""
    for marker in item.iter_markers("needs_data"):
        require_data(*marker.args, files=tuple(marker.kwargs.get("files", ())))


@pytest.fixture(scope="session", autouse=True)
def token_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tokenizer and token caches of this test session, never the user's ~/.cache."""
    path = tmp_path_factory.mktemp("attnlab_cache")
    os.environ["ATTNLAB_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(autouse=True)
def restore_environment() -> Iterator[None]:
    """Each test sees the environment the session started with: Lightning's in-process DDP
    launch sets LOCAL_RANK/WORLD_SIZE and attnlab's W&B logger sets WANDB_MODE for the rest of
    the process; left behind, they sent a later test's accelerate (lm-eval's HFLM) into a
    distributed start and W&B online."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def compose_config(tmp_path: Path, overrides: list[str], config_name: str = "train") -> DictConfig:
    """Compose like the CLI would, with the run directory in tmp_path."""
    GlobalHydra.instance().clear()
    with initialize_config_module("attnlab.conf", version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
        cfg.hydra.job.num = 0
        cfg.hydra.job.id = "0"
        cfg.paths.data_dir = str(DATA_DIR)
        cfg.paths.log_dir = str(tmp_path / "logs")
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def train_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """`train_config("debug=fast", ...)`: a tiny train config writing into tmp_path."""

    def make(*overrides: str, base: list[str] = TINY) -> DictConfig:
        return compose_config(tmp_path, [*base, *overrides])

    yield make
    GlobalHydra.instance().clear()


def run_cli(
    command: str, *args: str, cwd: Path, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run an installed entry point (`attnlab-train`, ...) as a user would."""
    executable = Path(sys.executable).parent / command
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [str(executable), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{command} {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result
