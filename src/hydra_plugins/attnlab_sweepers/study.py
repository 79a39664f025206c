"""The study of an Optuna search: its storage (SQLite shared safely between workers), its
directions and pruner, and how many of its trials have finished."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

# attnlab's `optimized_mode` names, beside Optuna's own.
DIRECTIONS = {"min": "minimize", "max": "maximize"}
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# SQLite waits this long for a lock that another worker holds (its default is 5 s).
SQLITE_TIMEOUT_S = 60


def optuna_direction(direction: Any) -> Any:
    """`min`/`max` (attnlab's optimized_mode) as Optuna's `minimize`/`maximize`."""
    if isinstance(direction, str):
        return DIRECTIONS.get(direction, direction)
    if isinstance(direction, Sequence):
        return [optuna_direction(d) for d in direction]
    return direction


def directions_of(direction: Any) -> list[str]:
    directions = optuna_direction(
        OmegaConf.to_object(direction) if OmegaConf.is_config(direction) else direction
    )
    return directions if isinstance(directions, list) else [directions]


def sqlite_file(url: str) -> Path | None:
    """The database file of an SQLite URL; None for another database or an in-memory one."""
    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def open_storage(url: str | None) -> optuna.storages.BaseStorage | None:
    """The study's storage. SQLite: its folder created (logs/optuna/ on a first run), the
    tables created by one worker at a time, and a lock held by another worker waited for."""
    if url is None:
        return None
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its setup chatter at INFO
    database = sqlite_file(url)
    if database is None:
        return optuna.storages.RDBStorage(url)
    database.parent.mkdir(parents=True, exist_ok=True)
    engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    with FileLock(f"{database}.lock"):
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


def build_pruner(config: Any) -> optuna.pruners.BasePruner:
    """`hydra.sweeper.pruner`: a config with `_target_`, or null for none."""
    if not config or not config.get("_target_"):
        return optuna.pruners.NopPruner()
    return instantiate(config)


def n_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))
