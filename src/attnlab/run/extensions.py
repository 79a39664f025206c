"""`extensions=[my_pkg.attnlab_ext]`: the user's modules, imported before the config is
checked, so that their `register_network` / `register_position_scheme` / `register_text_source`
calls make new `model._target_`s, `model.pos` values and corpora valid (docs/extending.md).
A checkpoint keeps the list in its run config, so attnlab-eval and -generate import them too."""

from __future__ import annotations

import contextlib
import importlib

from omegaconf import DictConfig

from attnlab.utils.errors import ConfigError


def import_extensions(cfg: DictConfig) -> None:
    """Import every module named in `cfg.extensions` (a missing one is a ConfigError)."""
    names = cfg.get("extensions") or []
    if isinstance(names, str):
        names = [names]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ConfigError(
                f"extensions: cannot import {name!r} ({error}); give importable module names, "
                "e.g. extensions=[my_pkg.attnlab_ext] with my_pkg on PYTHONPATH"
            ) from error


def import_extensions_from_argv(argv: list[str]) -> None:
    """Import the `extensions=[...]` modules of a command line before Hydra composes it, so
    that what they register (an attention variant's settings, `model.my_key=16`) is part of
    the config the overrides apply to. One that fails to import is left to `import_extensions`,
    which reports it once the config is composed."""
    for arg in argv:
        key, _, value = arg.partition("=")
        if key.lstrip("+~") != "extensions" or not value:
            continue
        for name in value.strip("[]").split(","):
            name = name.strip().strip("'\"")
            if name:
                with contextlib.suppress(ImportError):
                    importlib.import_module(name)
