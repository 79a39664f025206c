"""Turn Hydra's "Key 'x' is not in struct" into a suggestion naming the valid keys, and a key
that moved (`model.pretrained`) into one line naming its new place."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from attnlab.build.run_settings import MOVED_KEYS, moved_key_message, moved_keys_in_overrides


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
    return [hint for o in keyed if (hint := _hint(cfg, o.key_or_group, o.value()))]


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


def exit_on_moved_keys(args: Sequence[str]) -> None:
    """A run-level key that left the `model` group (`model.pretrained=...`) stops the command
    before Hydra composes anything: one line naming the new place, exit code 2 (usage)."""
    moved = moved_keys_in_overrides(args)
    for message in moved:
        print(f"attnlab: {message}", file=sys.stderr)
    if moved:
        sys.exit(2)


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
        with explain_config_errors(config_name):
            hydra_main()

    entry_point.__doc__ = hydra_main.__doc__
    return entry_point
