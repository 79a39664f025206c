"""Every private Hydra name attnlab relies on, behind named functions (as lightning_compat.py
does for Lightning). tests/test_hydra_compat.py fails naming the one a Hydra release moved."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

# module -> the private names used below
PRIVATE_NAMES: dict[str, tuple[str, ...]] = {
    "hydra._internal.utils": ("get_args_parser",),
    "hydra._internal.core_plugins.basic_sweeper": ("BasicSweeper",),
}


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


def basic_sweeper_jobs(config_target: str, overrides: list[Any]) -> list[list[str]] | None:
    """The jobs (each a list of overrides) Hydra's BasicSweeper makes of parsed `overrides`,
    when `config_target` names it; None for another sweeper. By name: Hydra's plugin scan
    imports the module again, so the classes differ."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    if config_target != f"{BasicSweeper.__module__}.{BasicSweeper.__name__}":
        return None
    (jobs,) = BasicSweeper.split_arguments(overrides, max_batch_size=None)
    return jobs
