"""Turn Hydra's "Key 'x' is not in struct" into a suggestion naming the valid keys, a key
that moved (`model.pretrained`) into one line naming its new place, and a ConfigError into one
line without a traceback (HYDRA_FULL_ERROR=1 shows it)."""

from __future__ import annotations

import difflib
import errno
import functools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, TypeVar

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from attnlab.data.loading.download import UnreadableDataError
from attnlab.run.artefacts import ArtefactWriteError
from attnlab.run.settings import MOVED_KEYS, moved_key_message, moved_keys_in_overrides
from attnlab.utils.errors import ConfigError  # defined in the lowest layer: any layer raises it
from attnlab.utils.extras import exit_on_missing_extras
from attnlab.utils.hydra_compat import args_parser

# Bad input, and a full disk or unwritable path, reported as one line; anything else is a bug
# or an accident: traceback.
INPUT_ERRORS = (ConfigError, UnreadableDataError, ArtefactWriteError)
# The exit code of a refused input, as for a moved key (a usage error).
INPUT_ERROR_EXIT = 2

R = TypeVar("R")


def unknown_key_hints(config_name: str, args: Sequence[str]) -> list[str]:
    """For each `a.b.c=value` override whose key does not exist, name close valid keys."""
    try:
        overrides = OverridesParser.create().parse_overrides(
            [arg for arg in args if not arg.startswith("-")]
        )
    except Exception:  # Hydra reports syntax errors itself
        return []
    # Group choices (model=encdec) shape the tree; keep them, drop plain key overrides.
    groups = [o.input_line for o in overrides if "." not in o.key_or_group and o.package is None]
    keyed = [
        o
        for o in overrides
        if "." in o.key_or_group
        and o.is_force_add() is False
        and not o.is_add()
        and not o.is_delete()
        and not o.key_or_group.startswith("hydra.")
    ]
    if not keyed:
        return []
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("attnlab.conf", version_base="1.3"):
            cfg = compose(config_name, overrides=groups)
    except Exception:
        return []
    finally:
        GlobalHydra.instance().clear()
    values = [o.input_line.split("=", 1)[1] if o.is_sweep_override() else o.value() for o in keyed]
    return [
        hint
        for o, value in zip(keyed, values, strict=True)
        if (hint := _hint(cfg, o.key_or_group, value))
    ]


def _hint(cfg: DictConfig, key: str, value: object) -> str | None:
    if key in MOVED_KEYS and OmegaConf.select(cfg, key, default=None) is None:
        return moved_key_message(key, value)
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    # keys(), not `in` or select(): both treat a key whose value is ??? as absent.
    if not isinstance(parent, DictConfig) or leaf in parent.keys():  # noqa: SIM118
        return None
    valid = sorted(str(k) for k in parent)
    close = difflib.get_close_matches(leaf, valid, n=3)
    guess = f" Did you mean {', '.join(f'{parent_key}.{c}' for c in close)}?" if close else ""
    return (
        f"Unknown key {key} (value {value!r}).{guess} "
        f"Valid keys under {parent_key or 'the root'}: {', '.join(valid)}"
    )


@contextmanager
def explain_config_errors(config_name: str) -> Iterator[None]:
    """Around a Hydra main: on failure, add hints about misspelt keys to stderr."""
    try:
        yield
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            for hint in unknown_key_hints(config_name, sys.argv[1:]):
                print(f"attnlab: {hint}", file=sys.stderr)
        raise


def exit_on_input_error(error: Exception) -> NoReturn:
    """One line `attnlab: <message>` on stderr and exit 2 (1 for a file that could not be
    written); with HYDRA_FULL_ERROR=1 (as Hydra does for its own errors) the traceback instead."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    print(f"attnlab: {error}", file=sys.stderr)
    sys.exit(1 if isinstance(error, ArtefactWriteError) else INPUT_ERROR_EXIT)


def exits_on_input_error(task_function: Callable[..., R]) -> Callable[..., R]:
    """Put under @hydra.main: Hydra prints a traceback for any exception of the task function,
    so a refused input exits here first, with one line."""

    @functools.wraps(task_function)
    def wrapper(*args: object, **kwargs: object) -> R:
        try:
            return task_function(*args, **kwargs)
        except INPUT_ERRORS as error:
            if _in_multirun():  # the sweeper decides: Optuna records a failed trial, goes on
                raise
            exit_on_input_error(error)

    return wrapper


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


# Flags that compose another config than attnlab's own: keys are checked by Hydra alone then.
OTHER_CONFIG = ("--config-dir", "-cd", "--config-name", "-cn", "--config-path", "-cp")
HELP_FLAGS = ("--help", "-h", "--hydra-help", "--shell-completion", "--info", "-i")


def exit_on_unknown_keys(config_name: str, args: Sequence[str]) -> None:
    """A misspelt key (`model.d_modle=64`) stops the command before Hydra composes: one line
    per key naming close valid ones, exit 2; Hydra's own error would come first, exit 1, and
    advise `+model.d_modle=64`, which would add the typo to the config."""
    if any(arg.split("=")[0] in (*OTHER_CONFIG, *HELP_FLAGS) for arg in args):
        return
    hints = unknown_key_hints(config_name, args_parser().parse_known_args(args)[0].overrides)
    for hint in hints:
        print(f"attnlab: {hint}", file=sys.stderr)
    if hints:
        sys.exit(INPUT_ERROR_EXIT)


def exit_on_moved_keys(args: Sequence[str]) -> None:
    """A run-level key that left the `model` group (`model.pretrained=...`) stops the command
    before Hydra composes anything: one line naming the new place, exit code 2 (usage)."""
    moved = moved_keys_in_overrides(args)
    for message in moved:
        print(f"attnlab: {message}", file=sys.stderr)
    if moved:
        sys.exit(2)


# Where a run writes: Hydra creates these before any attnlab code runs.
OUTPUT_KEYS = ("hydra.run.dir", "hydra.sweep.dir", "paths.log_dir", "paths.output_dir")
# Hydra's flags that print and exit: no run, no directory.
NOTHING_WRITTEN = (
    "--help",
    "-h",
    "--hydra-help",
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--shell-completion",
)


def exit_on_unwritable_output(args: Sequence[str]) -> None:
    """An output directory given on the command line that cannot be created (a read-only or
    virtual filesystem such as /proc, a file in the way) stops the command before Hydra tries:
    one line naming the key, the path and the reason, exit code 2."""
    if any(arg.split("=")[0] in NOTHING_WRITTEN for arg in args):
        return
    try:  # Hydra's own parsing: Lightning's DDP ranks get hydra.run.dir="<dir>", quoted
        overrides = OverridesParser.create().parse_overrides(
            [arg for arg in args if "=" in arg and not arg.startswith("-")]
        )
    except Exception:  # Hydra reports syntax errors itself
        return
    for override in overrides:
        key, value = override.key_or_group, override.value()
        if key not in OUTPUT_KEYS or not isinstance(value, str) or not value or "${" in value:
            continue
        path = Path(value).expanduser()
        try:
            path.mkdir(parents=True, exist_ok=True)
            if not os.access(path, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        except OSError as error:
            print(
                f"attnlab: {key}={value}: cannot write there ({error.strerror or error})",
                file=sys.stderr,
            )
            sys.exit(INPUT_ERROR_EXIT)


def with_config_hints(
    config_name: str,
    hydra_main: Callable[[], object],
    rewrite_args: Callable[[list[str]], list[str]] | None = None,
) -> Callable[[], None]:
    """Wrap a @hydra.main function as a console-script entry point. `rewrite_args` may change
    the command line's arguments first (attnlab-train: a resumed run's original overrides)."""

    def entry_point() -> None:
        if rewrite_args is not None:
            sys.argv = [sys.argv[0], *rewrite_args(sys.argv[1:])]
        exit_on_moved_keys(sys.argv[1:])
        exit_on_missing_extras(sys.argv[1:])  # logger=wandb without wandb, ...
        from attnlab.run.extensions import import_extensions_from_argv

        import_extensions_from_argv(sys.argv[1:])  # their registered keys exist when composing
        exit_on_unknown_keys(config_name, sys.argv[1:])
        exit_on_unwritable_output(sys.argv[1:])  # makes the folder: after the other refusals
        with explain_config_errors(config_name):
            hydra_main()

    entry_point.__doc__ = hydra_main.__doc__
    return entry_point
