"""OmegaConf resolvers used by the config tree."""

from __future__ import annotations

import secrets
from typing import Any

from omegaconf import DictConfig, OmegaConf


def _run_id() -> str:
    # A random suffix makes run directories unique even when two runs start in the same second.
    # The resolver is cached per config, and Hydra copies that cache into every job of a sweep,
    # so all jobs of one sweep share one id.
    return secrets.token_hex(3)


def _run_dir(resume: str | None, new_dir: str) -> str:
    # `resume=<run dir>` continues in that directory (attnlab-train refuses one that does not
    # exist before Hydra would create it: build/run_folder.py); anything else gets a new one.
    return new_dir if resume in (None, "auto") else str(resume)


def _attempt_subdir(output_dir: str, resume: str | None) -> str | None:
    # hydra.output_subdir: `.hydra` for a folder's first run, `.hydra/attempt-<n>` for a resume,
    # None (nothing written) for a run that will be refused (attnlab/build/run_folder.py).
    from attnlab.build.run_folder import attempt_subdir

    return attempt_subdir(output_dir, resume)


def _ladder_rung(key: str, rung: int | None = None, *, _root_: DictConfig) -> Any:
    # conf/ladder/*.yaml: the chosen rung's `key` (null where the rung leaves it out); `rung`
    # names another (rung 0: the μP base width). build/ladder.check_ladder reports a bad rung
    # in one line before anything resolves this.
    ladder = _root_.ladder
    return ladder.rungs[ladder.rung if rung is None else rung].get(key)


def register_resolvers() -> None:
    """Register attnlab's resolvers (idempotent)."""
    if not OmegaConf.has_resolver("attempt_subdir"):
        OmegaConf.register_new_resolver("attempt_subdir", _attempt_subdir)
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", _run_id, use_cache=True)
    if not OmegaConf.has_resolver("run_dir"):
        OmegaConf.register_new_resolver("run_dir", _run_dir)
    if not OmegaConf.has_resolver("ladder_rung"):
        OmegaConf.register_new_resolver("ladder_rung", _ladder_rung)
