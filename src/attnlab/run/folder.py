"""A run folder is append-only (docs/reliability.md, "A run folder is append-only").

- A second run in a folder that already holds a run's records is refused before any work,
  unless it resumes that run (`resume=<dir>`, or `resume=auto` with that `hydra.run.dir`).
- Each attempt's configs are kept: Hydra writes the first attempt's to `.hydra/`, a later one's
  to `.hydra/attempt-<n>/` (`hydra.output_subdir` is `${attempt_subdir:...}`, below). A refused
  run in another run's folder writes none. A first attempt refused before any work is marked
  (`.hydra/refused`; attnlab-compare shows it as failed) and leaves the folder free: the
  corrected command moves its configs to `.hydra/refused-<n>/` and starts there.
- `resume=<run>` alone is enough: the entry point puts the run's overrides (those of its latest
  attempt that started work) before the ones given now.
- `<run>/.lock` (flock, via `filelock`) stops two processes writing one folder at once; it is
  taken before Hydra writes anything. The file names its holder (pid, host); a dead holder's
  lock is taken over with a warning.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import yaml
from filelock import FileLock, Timeout
from omegaconf import DictConfig

from attnlab.run.validation import ConfigError

log = logging.getLogger(__name__)

# What work leaves in a run folder: any of them, or the first attempt's `.hydra/config.yaml`,
# means the folder holds a run. (Not the log file, which Hydra opens, appending, before any job
# code runs; nor `.lock`, `failure.json` or the configs of refused attempts: a folder that
# holds only those is still free for a first run.)
RUN_OUTPUTS = ("checkpoints", "metrics.json", "csv", "tensorboard", "wandb")
LOCK_FILE = ".lock"
ATTEMPT_PREFIX = "attempt-"
REFUSED_PREFIX = "refused-"
# In `.hydra/attempt-<n>/`: that attempt passed every check and started work.
STARTED_MARK = "started"
# In `.hydra/`: the first attempt was refused before any work.
REFUSED_MARK = "refused"
HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")


class RunFolderError(ConfigError):
    """A run refused to protect a folder's records: used by another run, locked, or a resume
    that would change what the run is. Nothing is written for it (no failure.json)."""


def holds_run(folder: Path) -> bool:
    """Whether `folder` holds a run (RUN_OUTPUTS, or the configs of a first attempt that was
    not refused)."""
    hydra_dir = folder / ".hydra"
    first = (hydra_dir / "config.yaml").exists() and not (hydra_dir / REFUSED_MARK).exists()
    return first or any((folder / name).exists() for name in RUN_OUTPUTS)


def _resumes(resume: str | None, folder: Path) -> bool:
    """Whether `resume` continues the run in `folder` (`auto`, or that folder)."""
    if resume in (None, "", "null", "None"):
        return False
    return resume == "auto" or Path(resume).resolve() == folder.resolve()


@dataclass
class Attempt:
    """This process's attempt at a run folder: its lock (None when another process holds it,
    named by `holder`), whether the folder held no run (`fresh`) or this resumes the one it
    held, and the subfolder Hydra writes this attempt's configs to (None: none)."""

    folder: Path
    lock: FileLock | None = None
    holder: str = ""
    fresh: bool = False
    resumes_run: bool = False
    subdir: str | None = None


# From the resolver (before Hydra writes the configs) until claim_run_folder takes it, and while
# the run is under way: resolving the config again must not claim another attempt.
_PENDING: dict[str, Attempt] = {}
_RUNNING: dict[str, Attempt] = {}


def attempt_subdir(output_dir: str, resume: str | None) -> str | None:
    """`hydra.output_subdir` of this attempt, decided under the folder's lock (taken here,
    before Hydra writes anything, and held until the run ends): `.hydra` for a folder's first
    run, `.hydra/attempt-<n>` for a resume of the run there, None (Hydra writes nothing) for an
    attempt that claim_run_folder will refuse."""
    if _rank() != 0:  # torchrun starts every rank with the same command: rank 0 writes
        return None
    folder = Path(output_dir).resolve()
    known = _RUNNING.get(str(folder)) or _PENDING.get(str(folder))
    if known is not None:
        return known.subdir
    attempt = _PENDING[str(folder)] = _take(folder, resume, writes_configs=True)
    return attempt.subdir


def _take(folder: Path, resume: str | None, writes_configs: bool) -> Attempt:
    """Lock `folder` and decide whether this attempt may run there, and where Hydra writes its
    configs (`writes_configs`: the command line; the Python API writes none)."""
    attempt = Attempt(folder)
    attempt.lock, attempt.holder = _acquire(folder)
    if attempt.lock is None:
        return attempt
    attempt.fresh = not holds_run(folder)
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
    attempts = _attempts(hydra_dir)
    number = (_attempt_number(attempts[-1]) if attempts else 1) + 1
    (hydra_dir / f"{ATTEMPT_PREFIX}{number}").mkdir()  # under the lock: no other writer
    return f".hydra/{ATTEMPT_PREFIX}{number}"


def _attempt_number(path: Path, prefix: str = ATTEMPT_PREFIX) -> int:
    suffix = path.name[len(prefix) :]
    return int(suffix) if path.name.startswith(prefix) and suffix.isdigit() else -1


def _attempts(hydra_dir: Path, prefix: str = ATTEMPT_PREFIX) -> list[Path]:
    """The `.hydra/<prefix><n>` folders, in order."""
    found = [p for p in hydra_dir.glob(f"{prefix}*") if _attempt_number(p, prefix) >= 0]
    return sorted(found, key=lambda p: _attempt_number(p, prefix))


def _rank() -> int:
    from attnlab.utils.rank_zero import global_rank  # Lightning's, without importing it

    return global_rank()


@contextmanager
def claim_run_folder(cfg: DictConfig) -> Iterator[Attempt]:
    """Around a training run: hold the folder's lock, and refuse a folder that holds another
    run (unless this resumes it), before any value is checked. DDP ranks other than 0 (which
    Lightning launches by re-running the command) neither check nor lock: rank 0 does both."""
    folder = Path(cfg.paths.output_dir)
    key = str(folder.resolve())
    if _rank() != 0 or key in _RUNNING:  # claimed already (attnlab-train, then train())
        yield _RUNNING.get(key) or Attempt(folder)
        return
    resume = cfg.get("resume")
    if resume not in (None, "auto") and not Path(resume).is_dir():  # before the lock makes it
        raise ConfigError(missing_resume_message(resume))
    attempt = _PENDING.pop(key, None) or _take(folder.resolve(), resume, writes_configs=False)
    try:
        if attempt.lock is None:
            raise RunFolderError(
                f"{folder} is in use by another run ({attempt.holder or 'another process'}; "
                f"lock file {folder / LOCK_FILE}); wait for it to finish, or leave "
                "hydra.run.dir out for a fresh folder"
            )
        if not attempt.fresh and not attempt.resumes_run:
            raise RunFolderError(
                f"hydra.run.dir={folder} already holds a run; continue it with "
                f"attnlab-train resume={folder}, or leave hydra.run.dir out for a fresh folder"
            )
        _RUNNING[key] = attempt
        try:
            yield attempt
        except ConfigError as error:
            _mark_refused(attempt, error)
            raise
        finally:
            _RUNNING.pop(key, None)
    finally:
        _release(folder, attempt.lock)


def mark_started(cfg: DictConfig) -> None:
    """Every check passed and work begins: a later `resume=<run>` takes this attempt's
    overrides (original_overrides)."""
    attempt = _RUNNING.get(str(Path(cfg.paths.output_dir).resolve()))
    if attempt is not None and attempt.subdir and attempt.subdir != ".hydra":
        with suppress(OSError):
            (attempt.folder / attempt.subdir / STARTED_MARK).write_text(f"{time.time()}\n")


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
    refused = _attempts(hydra_dir, REFUSED_PREFIX)
    number = (_attempt_number(refused[-1], REFUSED_PREFIX) if refused else 0) + 1
    target = hydra_dir / f"{REFUSED_PREFIX}{number}"
    target.mkdir()  # under the folder's lock: no other writer
    for name in (*HYDRA_FILES, REFUSED_MARK):
        if (hydra_dir / name).is_file():
            os.replace(hydra_dir / name, target / name)


def _holder() -> str:
    return f"pid {os.getpid()} on host {socket.gethostname()}"


def _acquire(folder: Path) -> tuple[FileLock | None, str]:
    """`<folder>/.lock`, held (with this process named in it), or (None, its holder's name).
    The file is emptied on release, so a name found there when the lock is free is a holder
    that died: its lock is taken over with a warning."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    before = path.read_text().strip() if path.is_file() else ""
    lock = FileLock(str(path), timeout=1)  # two starts at one moment: the second waits a second
    try:
        lock.acquire()
    except Timeout:
        return None, before or (path.read_text().strip() if path.is_file() else "")
    if before:
        log.warning("%s: taking over the lock of %s, which is no longer running", folder, before)
    path.write_text(_holder() + "\n")
    return lock, ""


def _release(folder: Path, lock: FileLock | None) -> None:
    if lock is None:
        return
    try:
        (folder / LOCK_FILE).write_text("")
    finally:
        lock.release()


# ---- `resume=<run>` alone is enough: the run's original overrides, then the ones given now ----

_NOT_CARRIED = ("resume", "ckpt_path")


def _arg_value(args: Sequence[str], key: str) -> str | None:
    value = None
    for arg in args:
        if arg.split("=", 1)[0].lstrip("+") == key and "=" in arg:
            value = arg.split("=", 1)[1].strip("'\"")
    return value


def missing_resume_message(folder: str | Path) -> str:
    return f"resume={folder} is not valid: no such run directory"


def resumed_folder(args: Sequence[str]) -> Path | None:
    """The run folder that a command line resumes (resume=<dir>, or resume=auto with
    hydra.run.dir=<dir>), or None."""
    resume = _arg_value(args, "resume")
    if resume in (None, "", "null"):
        return None
    if resume == "auto":
        run_dir = _arg_value(args, "hydra.run.dir")
        return Path(run_dir) if run_dir else None
    return Path(resume)


def original_overrides(folder: Path) -> list[str]:
    """The overrides of the run's latest attempt that started work (`.hydra/attempt-<n>/` with
    a `started` mark, else the first attempt's `.hydra/overrides.yaml`): a resume that extended
    the run (`trainer.max_epochs=10`) is extended again by the next `resume=<run>`, and one that
    was refused (a bad value, a changed model, a locked folder) is never taken. [] if none."""
    hydra_dir = folder / ".hydra"
    started = [p for p in _attempts(hydra_dir) if (p / STARTED_MARK).is_file()]
    first = [] if (hydra_dir / REFUSED_MARK).exists() else [hydra_dir]
    for directory in [*reversed(started), *first]:
        path = directory / "overrides.yaml"
        if path.is_file():
            return [str(line) for line in yaml.safe_load(path.read_text()) or []]
    return []


def merge_overrides(original: Sequence[str], given: Sequence[str]) -> list[str]:
    """`original` then `given`, without those of `original` that `given` sets again (an original
    `+key=...` keeps its `+` on the new value) and without `resume`/`ckpt_path`. Idempotent:
    merging the result with `original` again gives the same list."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed_now = parser.parse_overrides(list(given))
    now = {(o.key_or_group, o.package): o for o in parsed_now}
    kept: list[str] = []
    prefix: dict[tuple, str] = {}
    for line, o in zip(original, parser.parse_overrides(list(original)), strict=True):
        key = (o.key_or_group, o.package)
        if o.key_or_group in _NOT_CARRIED:
            continue
        if key in now:
            new = now[key]
            if (o.is_add() or o.is_force_add()) and not (
                new.is_add() or new.is_force_add() or new.is_delete()
            ):
                prefix[key] = "++" if o.is_force_add() else "+"
            continue
        kept.append(line)
    merged = [
        prefix.get((o.key_or_group, o.package), "") + line
        for line, o in zip(given, parsed_now, strict=True)
    ]
    return [*kept, *merged]


def with_original_overrides(args: Sequence[str]) -> list[str]:
    """For `attnlab-train resume=<run> [overrides]`: the run's original overrides, then these.
    A resume of a folder that does not exist stops here (exit 2), before Hydra makes it."""
    from hydra._internal.utils import get_args_parser  # Hydra's own parser: same flags

    args = list(args)
    parsed = get_args_parser().parse_known_args(args)[0]
    if parsed.multirun:
        return args
    given = list(parsed.overrides)
    folder = resumed_folder(given)
    if folder is None:
        return args
    if _arg_value(given, "resume") != "auto" and not folder.is_dir():
        print(f"attnlab: {missing_resume_message(folder)}", file=sys.stderr)
        sys.exit(2)
    original = original_overrides(folder)
    if not original or not given:
        return args
    # the overrides, in place of the given ones: flags (--config-name ...) stay where they were
    first = args.index(given[0])
    rest = [a for a in args[first:] if a not in given]
    return [*args[:first], *merge_overrides(original, given), *rest]
