"""Weights & Biases set-up: run name, group and tags from the config, offline without
credentials, and one W&B run per job (also for the jobs of a multirun in one process)."""

from __future__ import annotations

import logging
import netrc
import os
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from omegaconf import DictConfig

log = logging.getLogger(__name__)

# Knobs that change what the architecture is (not its size), in the order a run name lists them.
ARCHITECTURE_KNOBS = (
    "pos",
    "norm",
    "norm_first",
    "activation",
    "n_kv_heads",
    "qk_norm",
    "bias",
    "tie_output",
    "share_embeddings",
    "pooling",
)


def _knob_label(knob: str, value: Any) -> str:
    """How a knob's value reads in a run name: rope, rmsnorm, swiglu, kv1, preln, noqknorm."""
    if knob == "norm_first":
        return "preln" if value else "postln"
    if knob == "n_kv_heads":
        return f"kv{value}" if value else "mha"  # null: one key/value head per query head
    if knob == "pooling":
        return f"{value}pool"
    if isinstance(value, bool):
        flag = knob.replace("_", "")
        return flag if value else f"no{flag}"
    return f"no{knob}" if value in (None, "none") else str(value)


def changed_knobs(model: Mapping[str, Any] | None, option: str | None) -> dict[str, Any]:
    """The architecture knobs of `model` that differ from conf/model/<option>.yaml, in order.

    A model option from outside attnlab's config tree has no defaults here: no knobs.
    """
    if not model or not option:
        return {}
    path = files("attnlab.conf") / "model" / f"{option}.yaml"
    if not path.is_file():
        return {}
    defaults = yaml.safe_load(path.read_text()) or {}
    return {
        knob: model[knob]
        for knob in ARCHITECTURE_KNOBS
        if knob in model and (knob not in defaults or model[knob] != defaults[knob])
    }


def run_name(choices: Mapping[str, str | None], knobs: Mapping[str, Any], seed: int | None) -> str:
    """`<model>-<data>[-<knob>...]-s<seed>`, e.g. `gpt-sst2-rope-s1`: short and deterministic."""
    parts = [choices.get("model"), choices.get("data")]
    parts += [_knob_label(knob, value) for knob, value in knobs.items()]
    parts.append(None if seed is None else f"s{seed}")
    return "-".join(part for part in parts if part)


def run_group(choices: Mapping[str, str | None], task_name: str) -> str:
    """The experiment; else, in a multirun, the sweep (its directory name is unique per sweep,
    see conf/hydra/default.yaml); else the task name."""
    if choices.get("experiment"):
        return str(choices["experiment"])
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().sweep.dir).name
    return task_name


def has_wandb_credentials() -> bool:
    """An API key in the environment or in the netrc file that `wandb login` writes.

    Read with the standard library: wandb's own readers are internal and move between releases.
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").netloc
    # The file wandb reads: $NETRC, else ~/.netrc, else ~/_netrc.
    path = Path(os.environ.get("NETRC") or "~/.netrc").expanduser()
    if not os.environ.get("NETRC") and not path.is_file():
        path = Path("~/_netrc").expanduser()
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (netrc.NetrcParseError, OSError):  # missing or unreadable: no key
        return False
    return bool(entry and entry[2])


def is_wandb(entry: DictConfig) -> bool:
    """Whether a `logger.*` entry builds a WandbLogger (or a subclass)."""
    return issubclass(get_class(entry._target_), WandbLogger)


def wandb_arguments(
    cfg: DictConfig, entry: DictConfig, choices: Mapping[str, str | None]
) -> dict[str, Any]:
    """What `logger.wandb` leaves to attnlab: name and group (when null), the chosen model and
    data as extra tags, and offline mode when no credentials are found (unless WANDB_MODE says)."""
    picked = [choice for choice in (choices.get("model"), choices.get("data")) if choice]
    arguments: dict[str, Any] = {"tags": list(dict.fromkeys([*(entry.get("tags") or []), *picked]))}
    if entry.get("name") is None and picked:
        knobs = changed_knobs(cfg.get("model"), choices.get("model"))
        arguments["name"] = run_name(choices, knobs, cfg.get("seed"))
    if entry.get("group") is None:
        arguments["group"] = run_group(choices, cfg.get("task_name", "train"))
    chosen_mode = entry.get("offline") or entry.get("mode") or os.environ.get("WANDB_MODE")
    if not chosen_mode and not has_wandb_credentials():
        # wandb.init's `mode`, not WandbLogger's `offline`: that one forbids log_model and sets
        # WANDB_MODE for the rest of the process (the next jobs of a multirun).
        arguments["mode"] = "offline"
        rank_zero_info(
            "W&B: no credentials (WANDB_API_KEY, ~/.netrc): logging offline. "
            "`wandb login` (or WANDB_MODE=online) to log online."
        )
    return arguments


def wandb_config(hparams: dict[str, Any]) -> dict[str, Any]:
    """The run config W&B shows: the resolved config at the top (`model.pos`, as on the command
    line, not `config.model.pos`), beside `choices` and `parameters`."""
    return {**hparams.get("config", {}), **{k: v for k, v in hparams.items() if k != "config"}}


def log_hyperparams(loggers: list[Logger], hparams: dict[str, Any]) -> None:
    """`hparams` to every logger; W&B gets them in the shape of `wandb_config`."""
    for logger in loggers:
        is_wandb_logger = isinstance(logger, WandbLogger)
        logger.log_hyperparams(wandb_config(hparams) if is_wandb_logger else hparams)


@rank_zero_only
def summarise_best(loggers: list[Logger], metric: str | None, checkpoint: Any) -> None:
    """`best/<metric>` in each W&B run's summary: the optimized metric's best validation value
    (the best checkpoint's score). A W&B sweep reads a summary value, and W&B's default summary
    is the last value logged: scripts/wandb_sweep.yaml optimises this one."""
    score = getattr(checkpoint, "best_model_score", None)
    if metric is None or score is None:
        return
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary[f"best/{metric}"] = float(score)


@rank_zero_only
def finish_wandb(loggers: list[Logger], failed: bool = False) -> None:
    """End this job's W&B run, so the next job of a multirun (same process) starts its own;
    for an offline run, say how to upload it."""
    if not any(isinstance(logger, WandbLogger) for logger in loggers):
        return  # wandb is an optional package: a run without W&B never imports it
    import wandb

    if wandb.run is None:
        return
    run = wandb.run
    offline, sync_dir = run.offline, Path(run.settings.sync_dir).resolve()
    run.finish(exit_code=1 if failed else 0)
    if offline:
        log.info("W&B run %s saved offline; upload it with: wandb sync %s", run.id, sync_dir)
