"""A run folder is append-only (docs/reliability.md, "A run folder is append-only").

- A second run in a folder that already holds a run's records is refused before any work,
  unless it resumes that run (`resume=<dir>`, or `resume=auto` with that `hydra.run.dir`).
- Each attempt's configs are kept: Hydra writes the first attempt's to `.hydra/`, a later one's
  to `.hydra/attempt-<n>/` (`hydra.output_subdir` is `${attempt_subdir:...}`, below); a refused
  attempt writes none.
- `resume=<run>` alone is enough: the entry point puts the run's overrides (those of its latest
  attempt that was not refused) before the ones given now.
- `<run>/.lock` (flock, via `filelock`) stops two processes writing one folder at once; the
  file names its holder (pid, host); a dead holder's lock is taken over with a warning.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import yaml
from filelock import FileLock, Timeout
from omegaconf import DictConfig

from attnlab.build.validation import ConfigError

log = logging.getLogger(__name__)

# What a run leaves in its folder; any of them means the folder holds a run. (The log file,
# <task_name>.log, is not among them: Hydra opens it before any job code runs, and appends.)
RUN_RECORDS = (
    ".hydra",
    ".lock",
    "checkpoints",
    "metrics.json",
    "failure.json",
    "csv",
    "tensorboard",
    "wandb",
)
LOCK_FILE = ".lock"
# In an attempt's config folder: it was refused before any work (its overrides are not reused).
REFUSED_MARK = "refused.txt"
ATTEMPT_PREFIX = "attempt-"


class RunFolderError(ConfigError):
    """A run refused to protect a folder's records: used by another run, locked, or a resume
    that would change what the run is. Nothing is written for it (no failure.json)."""


def holds_run(folder: Path, ignore: Sequence[str] = ()) -> bool:
    """Whether `folder` holds any record of a run (RUN_RECORDS, less `ignore`)."""
    return any((folder / name).exists() for name in RUN_RECORDS if name not in ignore)


def _resumes(resume: str | None, folder: Path) -> bool:
    """Whether `resume` continues the run in `folder` (`auto`, or that folder)."""
    if resume in (None, "", "null", "None"):
        return False
    return resume == "auto" or Path(resume).resolve() == folder.resolve()


# Hydra evaluates hydra.output_subdir twice before writing, and the task function must know what
# the folder held before Hydra wrote to it: each job's answer, by resolved folder, until
# claim_run_folder takes it.
@dataclass(frozen=True)
class _Claim:
    subdir: str | None
    used: bool


_CLAIMS: dict[str, _Claim] = {}
# Folders whose run is under way in this process, with their attempt's subfolder: resolving the
# whole config again (the Python API logs it with its hydra node) must not claim another.
_RUNNING: dict[str, str | None] = {}


def attempt_subdir(output_dir: str, resume: str | None) -> str | None:
    """`hydra.output_subdir` of this attempt: `.hydra` for the first attempt in a folder,
    `.hydra/attempt-<n>` for a resume of the run there, None (Hydra writes nothing) for an
    attempt that claim_run_folder will refuse. The subfolder is made here, with mkdir, which
    fails for all but one of two processes starting in one folder at once."""
    if _rank() != 0:  # torchrun starts every rank with the same command: rank 0 writes
        return None
    folder = Path(output_dir).resolve()
    if str(folder) in _RUNNING:
        return _RUNNING[str(folder)]
    if (claim := _CLAIMS.get(str(folder))) is not None:
        return claim.subdir
    try:
        (folder / ".hydra").mkdir(parents=True)
        made = True  # no earlier attempt wrote configs here
    except FileExistsError:
        made = False
    used = not made or holds_run(folder, ignore=(".hydra",))
    subdir: str | None = ".hydra"
    if used and not _resumes(resume, folder):
        subdir = None
        if made:  # our own, of a moment ago: a refused run leaves nothing
            with suppress(OSError):
                (folder / ".hydra").rmdir()
    elif used and not made:
        subdir = _next_attempt(folder)
    _CLAIMS[str(folder)] = _Claim(subdir, used)
    return subdir


def _next_attempt(folder: Path) -> str:
    hydra_dir = folder / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    attempts = _attempts(hydra_dir)
    number = (_attempt_number(attempts[-1]) if attempts else 1) + 1
    while True:
        try:
            (hydra_dir / f"{ATTEMPT_PREFIX}{number}").mkdir()
            return f".hydra/{ATTEMPT_PREFIX}{number}"
        except FileExistsError:
            number += 1


def _attempt_number(path: Path) -> int:
    suffix = path.name[len(ATTEMPT_PREFIX) :]
    return int(suffix) if path.name.startswith(ATTEMPT_PREFIX) and suffix.isdigit() else -1


def _attempts(hydra_dir: Path) -> list[Path]:
    """The `.hydra/attempt-<n>` folders, in order."""
    found = [p for p in hydra_dir.glob(f"{ATTEMPT_PREFIX}*") if _attempt_number(p) >= 0]
    return sorted(found, key=_attempt_number)


def _rank() -> int:
    from pytorch_lightning.utilities import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


@contextmanager
def claim_run_folder(cfg: DictConfig) -> Iterator[None]:
    """Around a training run: hold the folder's lock, and refuse a folder that holds another
    run (unless this resumes it). DDP ranks other than 0 (which Lightning launches by re-running the
    command) neither check nor lock: rank 0 does both for them."""
    folder = Path(cfg.paths.output_dir)
    key = str(folder.resolve())
    if _rank() != 0 or key in _RUNNING:  # claimed already (attnlab-train, then train())
        yield
        return
    claim = _CLAIMS.pop(key, None)
    used = claim.used if claim is not None else holds_run(folder)
    with folder_lock(folder):  # first: a run writing there now is named as such
        if used and not _resumes(cfg.get("resume"), folder):
            raise RunFolderError(
                f"hydra.run.dir={folder} already holds a run; continue it with "
                f"attnlab-train resume={folder}, or leave hydra.run.dir out for a fresh folder"
            )
        _RUNNING[key] = subdir = claim.subdir if claim is not None else None
        try:
            yield
        except ConfigError as error:  # refused: a later resume must not take its overrides
            _mark_refused(folder, subdir, error)
            raise
        finally:
            _RUNNING.pop(key, None)


def _holder() -> str:
    return f"pid {os.getpid()} on host {socket.gethostname()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold `<folder>/.lock` (flock) while the body runs. The file names the holder; it is
    emptied on release, so a name found there when the lock is free is a holder that died."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    before = path.read_text().strip() if path.is_file() else ""
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = before or (path.read_text().strip() if path.is_file() else "") or "another process"
        raise RunFolderError(
            f"{folder} is in use by another run ({holder}; lock file {path}); wait for it to "
            "finish, or leave hydra.run.dir out for a fresh folder"
        ) from None
    try:
        if before:
            log.warning(
                "%s: taking over the lock of %s, which is no longer running%s",
                folder,
                before,
                _stale_detail(before),
            )
        path.write_text(_holder() + "\n")
        yield
    finally:
        try:
            path.write_text("")
        finally:
            lock.release()


def _stale_detail(holder: str) -> str:
    parts = holder.split()
    if len(parts) >= 5 and parts[0] == "pid" and parts[1].isdigit():
        pid, host = int(parts[1]), parts[4]
        if host == socket.gethostname() and _pid_alive(pid):
            return f" (pid {pid} exists but does not hold the lock)"
    return ""


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


def _mark_refused(folder: Path, subdir: str | None, error: BaseException) -> None:
    """Mark this attempt's config folder (`.hydra/attempt-<n>/`) as refused before any work,
    so that a later `resume=<run>` does not take its overrides (the refused value) again."""
    if subdir and (folder / subdir).is_dir():
        with suppress(OSError):
            (folder / subdir / REFUSED_MARK).write_text(f"{error}\n")


def original_overrides(folder: Path) -> list[str]:
    """The overrides of the run's latest attempt that was not refused (`.hydra/attempt-<n>/`,
    else the first attempt's `.hydra/overrides.yaml`): a resume that extended the run
    (`trainer.max_epochs=10`) is extended again by the next `resume=<run>`. [] if none."""
    hydra_dir = folder / ".hydra"
    attempts = sorted(
        (
            p
            for p in hydra_dir.glob(f"{ATTEMPT_PREFIX}*")
            if p.name[len(ATTEMPT_PREFIX) :].isdigit()
        ),
        key=lambda p: int(p.name[len(ATTEMPT_PREFIX) :]),
        reverse=True,
    )
    for directory in [*attempts, hydra_dir]:
        path = directory / "overrides.yaml"
        if path.is_file() and not (directory / REFUSED_MARK).exists():
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
