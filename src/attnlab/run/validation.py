"""Check a composed config before any work: required values, moved keys, value types and
ranges (run/value_checks.py), and whether the chosen network can do the data's task."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from attnlab.run.settings import (
    bad_compile_mode_message,
    bad_switch_message,
    moved_keys_in_config,
)
from attnlab.run.value_checks import ValueCheckError, check_command_values, check_values
from attnlab.utils.errors import ConfigError
from attnlab.utils.extras import logger_extra_message

if TYPE_CHECKING:
    import lightning.pytorch as pl
    from torch import nn

__all__ = ["ConfigError"]  # defined in errors.py: commands that only print help need no torch


def check_required(cfg: DictConfig) -> None:
    """Fail early on a moved run-level key, and on values a config marks as required (`???`)
    that nobody set."""
    check_moved_keys(cfg)
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra."))
    if missing:
        raise ConfigError(
            "required values not set: "
            + ", ".join(missing)
            + f" (e.g. `attnlab-train ... {missing[0]}=<value>`)"
        )


def check_moved_keys(cfg: DictConfig) -> None:
    """`model.pretrained` and the other run-level keys left the model group (settings.py)."""
    moved = moved_keys_in_config(cfg)
    if moved:
        raise ConfigError("; ".join(moved))


def check_run_settings(cfg: DictConfig) -> None:
    switch = bad_switch_message(cfg) or bad_compile_mode_message(cfg)  # compile, tf32, ...
    if switch:
        raise ConfigError(switch)
    if cfg.get("fp8", False) and cfg.get("train", True):
        from attnlab.models.fp8 import fp8_refusal  # torch

        refusal = fp8_refusal()
        if refusal:
            raise ConfigError(refusal)
    body_lr_scale = (cfg.get("init") or {}).get("body_lr_scale", 1.0)
    if not body_lr_scale > 0:
        raise ConfigError(f"init.body_lr_scale={body_lr_scale} must be positive")
    precision = str((cfg.get("trainer") or {}).get("precision"))
    if cfg.get("train", True) and precision in ("16-true", "16"):
        # fp16 weights and Adam state without loss scaling: the loss overflows at step 0
        raise ConfigError(
            f"trainer.precision={precision} is not valid for training: pure fp16 has no loss "
            "scaling and overflows; use 16-mixed, bf16-mixed (or bf16-true) or 32-true"
        )


# Logged besides the task's metrics: by the LightningModule (module.py) and the default
# callbacks (throughput.py; LearningRateMonitor as train/lr/<parameter group>).
OTHER_LOGGED = ("progress/tokens_seen", "progress/wall_time_s", "train/tokens_per_sec", "train/mfu")
OTHER_LOGGED_PREFIXES = ("train/lr/",)


def check_optimized_metric(cfg: DictConfig) -> None:
    """`optimized_metric` (what checkpointing, early stopping and sweepers monitor) is one the
    task logs while fitting; Lightning would only find out after the first epoch."""
    name = cfg.get("optimized_metric")
    task_cls = get_class(cfg.task._target_)
    # A task of an extension that declares no metric_names (tasks/base.py) is not checked.
    from attnlab.tasks.base import Task  # torch: imported when a job's config is checked

    declared = any("metric_names" in vars(c) for c in task_cls.__mro__ if c is not Task)
    if name is None or not declared or name.startswith(OTHER_LOGGED_PREFIXES):
        return
    logged = [*task_cls.fit_metrics(), *OTHER_LOGGED]
    if name not in logged:
        raise ConfigError(
            f"optimized_metric={name} is not valid: task {task_cls.name!r} logs "
            + ", ".join(logged)
        )


def check_max_len(cfg: DictConfig, network_cls: type) -> None:
    """The network has a position for every token of the data's longest sequence (a prefix LM
    doing seq2seq needs source + target: check_network_fits_data)."""
    data, model = cfg.get("data") or {}, cfg.get("model") or {}
    data_key = "block_size" if "block_size" in data else "max_len"
    needed, max_len = data.get(data_key), model.get("max_len")
    if getattr(network_cls, "prefix_lm", False) and get_class(cfg.task._target_).name == "seq2seq":
        return
    if isinstance(needed, int) and isinstance(max_len, int) and max_len < needed:
        raise ConfigError(
            f"model.max_len={max_len} is not valid: data.{data_key}={needed} needs at least "
            f"{needed} positions; set model.max_len>={needed}"
        )


def check_logger_extras(cfg: DictConfig) -> None:
    """A logger whose optional packages are missing (logger=wandb without wandb): one line
    naming the extra to install, before any work."""
    for name, entry in (cfg.get("logger") or {}).items():
        if entry and "_target_" in entry:
            message = logger_extra_message(str(name), entry._target_)
            if message:
                raise ConfigError(message)


def check_compatibility(cfg: DictConfig) -> None:
    """Fail early when the chosen network cannot do the data's task (the architecture-task
    matrix of the README), naming the pair and the models that can. Also fails on a value of
    the wrong type or an impossible size (run/value_checks.py), an optimized_metric the task
    does not log, a model.max_len shorter than the data's sequences, and data.nsp=true for a
    network without a next-sentence head."""
    try:
        check_values(cfg)
    except ValueCheckError as error:
        raise ConfigError(str(error)) from None
    check_run_settings(cfg)
    check_logger_extras(cfg)
    from attnlab.models.registry import network_class_of  # torch
    from attnlab.protocols import NextSentencePredictor

    network_cls = network_class_of(cfg.model)
    task_name = get_class(cfg.task._target_).name
    if not isinstance(getattr(network_cls, "supported_tasks", None), tuple):
        raise ConfigError(
            f"model._target_={cfg.model._target_}: {network_cls.__name__} declares no "
            "supported_tasks, a tuple of task names (the Network protocol, protocols.py)"
        )
    supported = network_cls.supported_tasks
    if task_name not in supported:
        choices = chosen_options()
        model = choices.get("model") or network_cls.__name__
        data = f" of data={choices['data']}" if choices.get("data") else ""
        able = [name for name, cls in model_options().items() if task_name in cls.supported_tasks]
        raise ConfigError(
            f"model={model} cannot do task {task_name!r}{data}; {network_cls.__name__} "
            f"supports: {', '.join(supported) or 'nothing'}. For {task_name!r} choose "
            f"model= one of {able}"
        )
    if (cfg.get("data") or {}).get("nsp") and not issubclass(network_cls, NextSentencePredictor):
        raise ConfigError(
            "data.nsp=true needs a model with a next-sentence head (NextSentencePredictor, "
            f"attnlab/protocols.py); {network_cls.__name__} has none: set data.nsp=false"
        )
    check_optimized_metric(cfg)
    check_max_len(cfg, network_cls)


def check_command(command: str, cfg: DictConfig) -> None:
    """The ranges of a command's own settings (run/value_checks.py), and the values of the
    sections it has (attnlab-eval's trainer), before any work."""
    try:
        check_command_values(command, cfg)
        check_values(cfg)
    except ValueCheckError as error:
        raise ConfigError(str(error)) from None


def check_network_fits_data(cfg: DictConfig, datamodule: pl.LightningDataModule) -> None:
    """Sizes the data imposes: a decoder-only network doing seq2seq (a prefix LM) reads
    source and target as one sequence, so they share one vocabulary and its positions."""
    from attnlab.models.registry import network_class_of

    network_cls, spec = network_class_of(cfg.model), datamodule.spec
    # A seq2seq network without `prefix_lm` is refused by its task's protocol check later.
    if spec.task != "seq2seq" or not getattr(network_cls, "prefix_lm", False):
        return
    separate = getattr(datamodule, "vocab", None) == "separate"
    if separate or spec.tgt_vocab_size not in (None, spec.vocab_size):
        model = chosen_options().get("model") or network_cls.__name__
        raise ConfigError(
            f"model={model} reads source and target as one sequence over one vocabulary, but "
            f"data.vocab=separate gives each side its own; set data.vocab=joint"
        )
    needed = 2 * spec.max_len
    if cfg.model.get("max_len", needed) < needed:
        raise ConfigError(
            f"model.max_len={cfg.model.max_len} is too short for source + target in one "
            f"sequence: the data's pairs need up to {needed} positions; set model.max_len={needed}"
        )


def check_data_fits_task(cfg: DictConfig, datamodule: pl.LightningDataModule) -> None:
    """The data's task is the configured task; separate vocabularies are not shared."""
    spec = datamodule.spec
    if spec.task != get_class(cfg.task._target_).name:
        raise ConfigError(f"data feeds task {spec.task!r} but task is {cfg.task._target_}")
    if getattr(datamodule, "vocab", None) == "separate" and cfg.model.get("share_embeddings"):
        raise ConfigError(
            "data.vocab=separate gives source and target their own vocabularies, but "
            "model.share_embeddings=true would look both up in one table; set "
            "model.share_embeddings=false"
        )
    check_network_fits_data(cfg, datamodule)


def model_options() -> dict[str, type[nn.Module]]:
    """The `model=` options and the network class each builds: the network registry
    (models/registry.py), attnlab's architectures and any a user registered."""
    from attnlab.models.registry import NETWORKS

    return dict(sorted(NETWORKS.items()))


def chosen_options() -> dict[str, str | None]:
    """The option picked in every config group (`model: encdec`, ...), Hydra's own excluded."""
    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    # Not picked by a user: Hydra's own groups, and defaults placed in another package (`@`):
    # the attention-variant settings conf/model merges, an experiment's per-model file
    # (`experiment/matched@_global_: None_gpt` where there is none).
    return {
        group: choice
        for group, choice in choices.items()
        if not group.startswith("hydra") and "@" not in group
    }
