"""Turn a composed config into the objects of a run. Shared by every entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import Logger

from attnlab.models.parameters import count_parameters
from attnlab.module import AttnLabModule

__all__ = ["ConfigError", "count_parameters"]


class ConfigError(ValueError):
    """A config that cannot work, reported before any work is done."""


def check_compatibility(cfg: DictConfig) -> None:
    """Fail early when the chosen network cannot do the data's task."""
    network_cls = get_class(cfg.model._target_)
    task_name = get_class(cfg.task._target_).name
    supported = getattr(network_cls, "supported_tasks", ())
    if task_name not in supported:
        raise ConfigError(
            f"model={network_cls.__name__} cannot do task {task_name!r} (set by the data config); "
            f"it supports: {', '.join(supported) or 'nothing'}"
        )


# Keys of a section that are attnlab's own settings, not constructor arguments.
NOT_ARGUMENTS = ("compile",)


def instantiate_section(cfg: DictConfig, key: str, **kwargs: Any) -> Any:
    """instantiate(cfg[key]); a bad value becomes a ConfigError that starts with the key."""
    node = OmegaConf.to_container(cfg[key], resolve=True)
    for name in NOT_ARGUMENTS:
        node.pop(name, None)
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__ if isinstance(error.__cause__, ValueError | TypeError) else error
        raise ConfigError(f"{key}: {cause}") from error


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    return instantiate_section(cfg, "data")


def build_module(cfg: DictConfig, datamodule: pl.LightningDataModule) -> AttnLabModule:
    spec = datamodule.spec
    if spec.task != get_class(cfg.task._target_).name:
        raise ConfigError(f"data feeds task {spec.task!r} but task is {cfg.task._target_}")
    network = instantiate_section(cfg, "model", vocab_size=spec.vocab_size)
    if cfg.model.get("compile", False):
        # In place: the forward is compiled, parameter names (and checkpoints) stay the same.
        network.compile()
    task = instantiate_section(cfg, "task", spec=spec)
    scheduler = instantiate_section(cfg, "scheduler") if cfg.get("scheduler") else None
    return AttnLabModule(
        network=network,
        task=task,
        optimizer=instantiate_section(cfg, "optimizer"),
        scheduler=scheduler,
        config=OmegaConf.to_container(cfg, resolve=True),
    )


def _instantiate_entries(group: DictConfig | None) -> list[Any]:
    """Named entries (`callbacks.model_checkpoint`, `logger.csv`, ...); null ones are off."""
    if not group:
        return []
    return [instantiate(entry) for entry in group.values() if entry and "_target_" in entry]


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    return _instantiate_entries(cfg.get("callbacks"))


def build_loggers(cfg: DictConfig) -> list[Logger]:
    return _instantiate_entries(cfg.get("logger"))


def build_trainer(cfg: DictConfig, callbacks: list[Callback], loggers: list[Logger]) -> pl.Trainer:
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)


def check_checkpoint_path(ckpt_path: str | None) -> None:
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path} does not exist (or is not a file)")


def load_run_config(ckpt_path: str) -> DictConfig:
    """The resolved training config saved inside an attnlab checkpoint."""
    check_checkpoint_path(ckpt_path)
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as error:  # a truncated or foreign file: say which one
        raise ConfigError(f"ckpt_path={ckpt_path} is not a readable checkpoint: {error}") from error
    config = checkpoint.get("hyper_parameters", {}).get("config")
    if config is None:
        raise ConfigError(f"ckpt_path={ckpt_path} holds no attnlab run config")
    return OmegaConf.create(config)


def load_trained_module(
    ckpt_path: str, data_overrides: DictConfig | dict | None = None
) -> tuple[DictConfig, pl.LightningDataModule, AttnLabModule]:
    """Rebuild data and module from an attnlab checkpoint and load its weights (on CPU)."""
    run_cfg = load_run_config(ckpt_path)
    if data_overrides:
        run_cfg.data = OmegaConf.merge(run_cfg.data, data_overrides)
    datamodule = build_datamodule(run_cfg)
    module = build_module(run_cfg, datamodule)
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    module.load_state_dict(checkpoint["state_dict"])
    return run_cfg, datamodule, module
