"""A run folder is append-only (docs/reliability.md, "A run folder is append-only").

- A second run in a folder that already holds a run's records is refused before any work,
  unless it resumes that run (`resume=<dir>`, or `resume=auto` with that `hydra.run.dir`).
- Each attempt's configs are kept: Hydra writes the first attempt's to `.hydra/`, a later one's
  to `.hydra/attempt-<n>/`. A refused run in another run's folder writes none. A first attempt
  refused before any work is marked (`.hydra/refused`; attnlab-compare shows it as failed) and
  leaves the folder free: the corrected command moves its configs to `.hydra/refused-<n>/`.
- `<run>/.lock` (folder_lock.py) stops two processes writing one folder at once. The
  Hydra callback `RunFolderLock` takes it before Hydra writes anything and sets
  `hydra.output_subdir`; a multirun holds its sweep folder's the same way, so a second sweep
  into it is refused before it writes its multirun.yaml. `claim_run_folder` refuses what the
  decision refused; without a Hydra app (the Python API) it takes the lock itself. No state
  lives in this module: the decision travels in Hydra's config, the holder in the lock file.
"""

from __future__ import annotations

import atexit
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict, read_write

from attnlab.run.folder_lock import LOCK_FILE, acquire, held_here, release
from attnlab.run.validation import ConfigError

# What work leaves in a run folder: any of them, or the first attempt's `.hydra/config.yaml`,
# means the folder holds a run. (Not the log file, which Hydra opens before any job code
# runs; nor `.lock`, `failure.json` or the configs of refused attempts.)
RUN_OUTPUTS = ("checkpoints", "metrics.json", "csv", "tensorboard", "wandb")
ATTEMPT_PREFIX = "attempt-"
REFUSED_PREFIX = "refused-"
STARTED_MARK = "started"  # in `.hydra/attempt-<n>/`: that attempt passed every check
REFUSED_MARK = "refused"  # in `.hydra/`: the first attempt was refused before any work
HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")


class RunFolderError(ConfigError):
    """A run refused to protect a folder's records: used by another run, locked, or a resume
    that would change what the run is. Nothing is written for it (no failure.json)."""


def holds_run(folder: Path, configs: bool = True) -> bool:
    """Whether `folder` holds a run: RUN_OUTPUTS, or (`configs`) the configs of a first
    attempt that was not refused."""
    hydra_dir = folder / ".hydra"
    first = (hydra_dir / "config.yaml").exists() and not (hydra_dir / REFUSED_MARK).exists()
    return (configs and first) or any((folder / name).exists() for name in RUN_OUTPUTS)


def _resumes(resume: str | None, folder: Path) -> bool:
    """Whether `resume` continues the run in `folder` (`auto`, or that folder)."""
    if resume in (None, "", "null", "None"):
        return False
    return resume == "auto" or Path(resume).resolve() == folder.resolve()


@dataclass
class Attempt:
    """This process's attempt at a run folder: its lock when this object took it, who holds
    it when another process does (`holder`), whether the folder held no run (`fresh`) or this
    resumes the run there, and where Hydra writes this attempt's configs (None: nowhere)."""

    folder: Path
    lock: FileLock | None = None
    holder: str = ""
    fresh: bool = False
    resumes_run: bool = False
    subdir: str | None = None


def _take(folder: Path, resume: str | None, writes_configs: bool, configs: bool = True) -> Attempt:
    """Lock `folder` and decide whether this attempt may run there, and where Hydra writes its
    configs (`writes_configs`: a single run at the command line)."""
    attempt = Attempt(folder)
    attempt.lock, attempt.holder = acquire(folder)
    if attempt.lock is None:
        return attempt
    attempt.fresh = not holds_run(folder, configs)
    attempt.resumes_run = not attempt.fresh and _resumes(resume, folder)
    if writes_configs and attempt.fresh:
        _set_aside_refused(folder)  # a refused first attempt's configs, if any
        attempt.subdir = ".hydra"
    elif writes_configs and attempt.resumes_run:
        attempt.subdir = _next_attempt(folder)
    return attempt


def _next_attempt(folder: Path) -> str:
    hydra_dir = folder / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    found = attempts(hydra_dir)
    number = (_attempt_number(found[-1]) if found else 1) + 1
    (hydra_dir / f"{ATTEMPT_PREFIX}{number}").mkdir()  # under the lock: no other writer
    return f".hydra/{ATTEMPT_PREFIX}{number}"


def _attempt_number(path: Path, prefix: str = ATTEMPT_PREFIX) -> int:
    suffix = path.name[len(prefix) :]
    return int(suffix) if path.name.startswith(prefix) and suffix.isdigit() else -1


def attempts(hydra_dir: Path, prefix: str = ATTEMPT_PREFIX) -> list[Path]:
    """The `.hydra/<prefix><n>` folders, in order."""
    found = [p for p in hydra_dir.glob(f"{prefix}*") if _attempt_number(p, prefix) >= 0]
    return sorted(found, key=lambda p: _attempt_number(p, prefix))


def _rank() -> int:
    from attnlab.utils.rank_zero import global_rank  # Lightning's, without importing it

    return global_rank()


class RunFolderLock(Callback):
    """Hydra callback (conf/hydra/default.yaml): before Hydra writes a single run's configs,
    lock its folder and set `hydra.output_subdir` (`.hydra`, `.hydra/attempt-<n>`, or None
    for a run claim_run_folder will refuse); release the lock when the run ends. A multirun
    whose sweep folder holds runs is refused before its first job."""

    def __init__(self) -> None:
        self.attempt: Attempt | None = None
        self.sweep: Attempt | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Launchers that pickle the callbacks into their jobs (submitit): a job gets none of
        # the locks this process holds (a file lock does not pickle, and is not the job's).
        return {**vars(self), "attempt": None, "sweep": None}

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with read_write(config.hydra), open_dict(config.hydra):
            run_dir = config.hydra.run.dir = str(config.hydra.run.dir)  # drawn once
            if _rank() != 0:  # DDP ranks re-run the command: rank 0 locks and writes
                config.hydra.output_subdir = None
                return
            self.attempt = _take(Path(run_dir).resolve(), config.get("resume"), True)
            config.hydra.output_subdir = self.attempt.subdir
        # A refused run leaves by sys.exit, which skips on_run_end: release at exit then.
        atexit.register(self.release)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        atexit.unregister(self.release)
        self.release()

    def release(self) -> None:
        for attempt in (self.attempt, self.sweep):
            if attempt is not None:
                release(attempt.folder, attempt.lock)
        self.attempt = self.sweep = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra turns a callback's exception into a warning and sweeps on: a refusal exits.
        from attnlab.run.errors import exit_on_input_error

        sweep = Path(str(config.hydra.sweep.dir))
        if _rank() != 0:
            return
        lock, holder = acquire(sweep)  # held until the sweep ends: one sweep per folder
        if lock is None:
            exit_on_input_error(
                RunFolderError(
                    f"hydra.sweep.dir={sweep} is in use by another sweep ({holder}; lock file "
                    f"{sweep / LOCK_FILE}); wait for it to finish, or leave hydra.sweep.dir out"
                )
            )
        self.sweep = Attempt(sweep, lock)
        atexit.register(self.release)
        used = sorted(p for p in sweep.glob("*") if p.is_dir() and holds_run(p))
        if used:
            self.release()
            exit_on_input_error(
                RunFolderError(
                    f"hydra.sweep.dir={sweep} already holds runs ({used[0]}, ...); leave "
                    "hydra.sweep.dir out for a fresh folder"
                )
            )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        atexit.unregister(self.release)
        self.release()


def _decided_by_hydra(folder: Path) -> Attempt | None:
    """The attempt RunFolderLock decided for this single run, if it holds the folder's lock."""
    if not HydraConfig.initialized() or not held_here(folder):
        return None
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.RUN:
        return None
    subdir = hydra.output_subdir
    resumes = subdir is not None and subdir.startswith(f".hydra/{ATTEMPT_PREFIX}")
    return Attempt(folder, fresh=subdir == ".hydra", resumes_run=resumes, subdir=subdir)


@contextmanager
def claim_run_folder(cfg: DictConfig) -> Iterator[Attempt]:
    """Around a training run: hold the folder's lock, and refuse a folder that holds another
    run (unless this resumes it), before any value is checked. DDP ranks other than 0 (which
    Lightning launches by re-running the command) neither check nor lock: rank 0 does both."""
    folder = Path(cfg.paths.output_dir).resolve()
    resume = cfg.get("resume")
    if resume not in (None, "auto") and not Path(resume).is_dir():  # before the lock makes it
        raise ConfigError(missing_resume_message(resume))
    attempt = _decided_by_hydra(folder)
    if _rank() != 0 or (attempt is None and held_here(folder)):  # claimed already
        yield attempt or Attempt(folder)
        return
    if attempt is None:  # the Python API, or a multirun job (its configs are written)
        multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        attempt = _take(folder, resume, writes_configs=False, configs=not multirun)
    try:
        _refuse(attempt, Path(cfg.paths.output_dir))
        try:
            yield attempt
        except ConfigError as error:
            _mark_refused(attempt, error)
            raise
    finally:
        release(folder, attempt.lock)


def _refuse(attempt: Attempt, folder: Path) -> None:
    if attempt.holder:
        raise RunFolderError(
            f"{folder} is in use by another run ({attempt.holder}; "
            f"lock file {folder / LOCK_FILE}); wait for it to finish, or leave "
            "hydra.run.dir out for a fresh folder"
        )
    if not attempt.fresh and not attempt.resumes_run:
        raise RunFolderError(
            f"hydra.run.dir={folder} already holds a run; continue it with "
            f"attnlab-train resume={folder}, or leave hydra.run.dir out for a fresh folder"
        )


def mark_started(cfg: DictConfig) -> None:
    """Every check passed and work begins: a later `resume=<run>` takes this attempt's
    overrides (resume_overrides.original_overrides)."""
    folder = Path(cfg.paths.output_dir).resolve()
    attempt = _decided_by_hydra(folder)
    if attempt is not None and attempt.resumes_run and attempt.subdir:
        with suppress(OSError):
            (folder / attempt.subdir / STARTED_MARK).write_text(f"{time.time()}\n")


def attempt_started(cfg: DictConfig) -> bool:
    """Whether this resume of a run passed every check and began work (`mark_started`)."""
    folder = Path(cfg.paths.output_dir).resolve()
    attempt = _decided_by_hydra(folder)
    return bool(attempt and attempt.subdir and (folder / attempt.subdir / STARTED_MARK).exists())


def _mark_refused(attempt: Attempt, error: BaseException) -> None:
    """A first attempt refused before any work: `.hydra/refused` says so, and the folder stays
    free for the corrected command. A refused resume's `attempt-<n>/` just has no `started`."""
    hydra_dir = attempt.folder / ".hydra"
    if attempt.subdir != ".hydra" or any((attempt.folder / n).exists() for n in RUN_OUTPUTS):
        return  # a resume, or work began after all: these configs describe it
    with suppress(OSError):
        (hydra_dir / REFUSED_MARK).write_text(f"{error}\n")


def _set_aside_refused(folder: Path) -> None:
    """Move a refused first attempt's configs (and its mark) to `.hydra/refused-<n>/`, so that
    `.hydra/` describes the run that starts now (attnlab-compare reads it)."""
    hydra_dir = folder / ".hydra"
    if not (hydra_dir / REFUSED_MARK).is_file():
        return
    refused = attempts(hydra_dir, REFUSED_PREFIX)
    number = (_attempt_number(refused[-1], REFUSED_PREFIX) if refused else 0) + 1
    target = hydra_dir / f"{REFUSED_PREFIX}{number}"
    target.mkdir()  # under the folder's lock: no other writer
    for name in (*HYDRA_FILES, REFUSED_MARK):
        if (hydra_dir / name).is_file():
            os.replace(hydra_dir / name, target / name)


def missing_resume_message(folder: str | Path) -> str:
    return f"resume={folder} is not valid: no such run directory"
