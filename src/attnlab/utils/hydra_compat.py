"""Every private Hydra name attnlab relies on, behind named functions (as lightning_compat.py
does for Lightning). tests/test_hydra_compat.py fails naming the one a Hydra release moved."""

from __future__ import annotations

import argparse
import importlib

# module -> the private names used below
PRIVATE_NAMES: dict[str, tuple[str, ...]] = {"hydra._internal.utils": ("get_args_parser",)}


def missing_private_names() -> list[str]:
    """`module.name` for each name above that the installed Hydra lacks."""
    missing = []
    for module_name, names in PRIVATE_NAMES.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            missing += [f"{module_name}.{name}" for name in names]
            continue
        missing += [f"{module_name}.{name}" for name in names if not hasattr(module, name)]
    return missing


def args_parser() -> argparse.ArgumentParser:
    """The parser @hydra.main reads the command line with (-m, --config-name, overrides...):
    Hydra has no public one."""
    from hydra._internal.utils import get_args_parser

    return get_args_parser()
