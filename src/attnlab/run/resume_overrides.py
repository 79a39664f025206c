"""`attnlab-train resume=<run>` alone is enough: the run's original overrides (those of its
latest attempt that started work), then the ones given now (docs/reliability.md)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from attnlab.run.folder import REFUSED_MARK, STARTED_MARK, attempts, missing_resume_message
from attnlab.utils.hydra_compat import args_parser

_NOT_CARRIED = ("resume", "ckpt_path")


def _arg_value(args: Sequence[str], key: str) -> str | None:
    value = None
    for arg in args:
        if arg.split("=", 1)[0].lstrip("+") == key and "=" in arg:
            value = arg.split("=", 1)[1].strip("'\"")
    return value


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
    started = [p for p in attempts(hydra_dir) if (p / STARTED_MARK).is_file()]
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
    args = list(args)
    parsed = args_parser().parse_known_args(args)[0]  # Hydra's own parser: same flags
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
