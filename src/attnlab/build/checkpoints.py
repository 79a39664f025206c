"""Find and read checkpoints: the one `fit` resumes from, and the run config stored inside."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from attnlab.build.run_settings import upgrade_run_config
from attnlab.build.validation import ConfigError

log = logging.getLogger(__name__)


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """The checkpoint `fit` starts from: `ckpt_path`, or with `resume` (or `ckpt_path=last`)
    the newest `*.ckpt` in this run's checkpoint directory (None, with a log line, if there is
    none yet: a requeued job that was stopped before its first checkpoint starts afresh)."""
    resume, ckpt_path = cfg.get("resume"), cfg.get("ckpt_path")
    if ckpt_path not in (None, "last"):
        if resume is not None:
            raise ConfigError(f"set either resume={resume} or ckpt_path={ckpt_path}, not both")
        check_checkpoint_path(ckpt_path)
        return ckpt_path
    if resume is None and ckpt_path is None:
        return None
    if (
        resume not in (None, "auto")
        and Path(resume).resolve() != Path(cfg.paths.output_dir).resolve()
    ):
        raise ConfigError(f"resume={resume} but the run directory is {cfg.paths.output_dir}")
    directory = Path(cfg.paths.output_dir) / "checkpoints"
    found = [p for p in directory.glob("*.ckpt") if p.is_file()]
    if not found:
        log.warning("resume: no checkpoint in %s yet; starting from scratch", directory)
        return None
    # last.ckpt wins a tie: it is written after best.ckpt in the same step.
    newest = max(found, key=lambda p: (p.stat().st_mtime, p.name == "last.ckpt"))
    log.info("Resuming from %s", newest)
    return str(newest)


def check_checkpoint_path(ckpt_path: str | None) -> None:
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path} does not exist (or is not a file)")


def load_checkpoint(ckpt_path: str) -> dict[str, Any]:
    """The checkpoint's contents, on CPU; a ConfigError naming the file if it cannot be read."""
    check_checkpoint_path(ckpt_path)
    try:
        return torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as error:  # a truncated or foreign file: say which one
        raise ConfigError(f"ckpt_path={ckpt_path} is not a readable checkpoint: {error}") from error


def load_run_config(ckpt_path: str, checkpoint: dict[str, Any] | None = None) -> DictConfig:
    """The resolved training config saved inside an attnlab checkpoint, with the run-level
    keys of older checkpoints moved to where they live now (run_settings.py)."""
    checkpoint = checkpoint or load_checkpoint(ckpt_path)
    config = checkpoint.get("hyper_parameters", {}).get("config")
    if config is None:
        raise ConfigError(f"ckpt_path={ckpt_path} holds no attnlab run config")
    return upgrade_run_config(OmegaConf.create(config))
