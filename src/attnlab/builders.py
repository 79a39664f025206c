"""Turn a composed config into the objects of a run. Shared by every entry point."""

from __future__ import annotations

import logging
import os
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import Logger

from attnlab.checkpoint_io import AtomicCheckpointIO
from attnlab.data.spec import DataSpec
from attnlab.data.loading.token_cache import default_cache_dir
from attnlab.loggers import is_wandb, wandb_arguments
from attnlab.models.decoder_only import DecoderOnly
from attnlab.models.parameters import count_parameters
from attnlab.module import AttnLabModule
from attnlab.utils.config_checks import NOT_ARGUMENTS, ValueCheckError, check_values

__all__ = ["ConfigError", "count_parameters"]

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config that cannot work, reported before any work is done."""


def check_required(cfg: DictConfig) -> None:
    """Fail early on values a config marks as required (`???`) that nobody set."""
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra."))
    if missing:
        raise ConfigError(
            "required values not set: "
            + ", ".join(missing)
            + f" (e.g. `attnlab-train ... {missing[0]}=<value>`)"
        )


def check_compatibility(cfg: DictConfig) -> None:
    """Fail early when the chosen network cannot do the data's task (the architecture-task
    matrix of the README), naming the pair and the models that can. Also fails on a value of
    the wrong type or an impossible size (utils/config_checks.py)."""
    try:
        check_values(cfg)
    except ValueCheckError as error:
        raise ConfigError(str(error)) from None
    network_cls = get_class(cfg.model._target_)
    task_name = get_class(cfg.task._target_).name
    supported = getattr(network_cls, "supported_tasks", ())
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


def model_options() -> dict[str, type]:
    """The `model` config group's options and the network class each builds."""
    options = {}
    for entry in sorted((files("attnlab.conf") / "model").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            target = OmegaConf.create(entry.read_text()).get("_target_")
            if target:
                options[entry.name.removesuffix(".yaml")] = get_class(target)
    return options


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
    """The data; fine-tuning from `model.pretrained` reuses that checkpoint's tokenizer."""
    pretrained = cfg.model.get("pretrained")
    if pretrained and "tokenizer_path" in cfg.data and cfg.data.tokenizer_path is None:
        with open_dict(cfg):
            cfg.data.tokenizer_path = pretrained_tokenizer_file(pretrained, cfg.paths.cache_dir)
    return instantiate_section(cfg, "data")


def check_network_fits_data(cfg: DictConfig, datamodule: pl.LightningDataModule) -> None:
    """Sizes the data imposes: a decoder-only network doing seq2seq (a prefix LM) reads
    source and target as one sequence, so they share one vocabulary and its positions."""
    network_cls, spec = get_class(cfg.model._target_), datamodule.spec
    if spec.task != "seq2seq" or not issubclass(network_cls, DecoderOnly):
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


def network_arguments(spec: DataSpec) -> dict[str, Any]:
    """What the network learns from the data: vocabulary size, and classes for classifiers."""
    kwargs: dict[str, Any] = {"vocab_size": spec.vocab_size}
    if spec.num_classes is not None:
        kwargs["num_classes"] = spec.num_classes
    # Separate source/target vocabularies (only EncoderDecoder takes tgt_vocab_size).
    if spec.tgt_vocab_size is not None and spec.tgt_vocab_size != spec.vocab_size:
        kwargs["tgt_vocab_size"] = spec.tgt_vocab_size
    return kwargs


def build_module(cfg: DictConfig, datamodule: pl.LightningDataModule) -> AttnLabModule:
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
    network = instantiate_section(cfg, "model", **network_arguments(spec))
    if cfg.model.get("pretrained"):
        load_pretrained_body(network, cfg.model.pretrained, datamodule)
    if cfg.model.get("freeze_layers"):
        network.freeze_layers(cfg.model.freeze_layers)
    if cfg.model.get("compile", False):
        # In place: the forward is compiled, parameter names (and checkpoints) stay the same.
        network.compile()
    task = instantiate_section(cfg, "task", spec=spec)
    scheduler = instantiate_section(cfg, "scheduler") if cfg.get("scheduler") else None
    body_lr_scale = cfg.model.get("body_lr_scale", 1.0)
    if not body_lr_scale > 0:
        raise ConfigError(f"model.body_lr_scale={body_lr_scale} must be positive")
    return AttnLabModule(
        network=network,
        task=task,
        optimizer=instantiate_section(cfg, "optimizer"),
        scheduler=scheduler,
        body_lr_scale=body_lr_scale,
        config=OmegaConf.to_container(cfg, resolve=True),
    )


def _instantiate_entries(group: DictConfig | None) -> list[Any]:
    """Named entries (`callbacks.model_checkpoint`, `logger.csv`, ...); null ones are off."""
    if not group:
        return []
    return [instantiate(entry) for entry in group.values() if entry and "_target_" in entry]


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    return _instantiate_entries(cfg.get("callbacks"))


def chosen_options() -> dict[str, str | None]:
    """The option picked in every config group (`model: encdec`, ...), Hydra's own excluded."""
    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {group: choice for group, choice in choices.items() if not group.startswith("hydra")}


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """The `logger.*` entries; W&B's name, group, tags and mode come from the run (loggers.py)."""
    loggers = []
    for entry in (cfg.get("logger") or {}).values():
        if not entry or "_target_" not in entry:
            continue
        extra = wandb_arguments(cfg, entry, chosen_options()) if is_wandb(entry) else {}
        loggers.append(instantiate(entry, **extra))
    return loggers


def build_trainer(
    cfg: DictConfig,
    callbacks: list[Callback],
    loggers: list[Logger],
    datamodule: pl.LightningDataModule | None = None,
) -> pl.Trainer:
    """The configured Trainer (`trainer.strategy` may be a strategy object's config)."""
    # Atomic checkpoint files, unless the config brings its own plugins.
    extra: dict[str, Any] = (
        {} if cfg.trainer.get("plugins") else {"plugins": [AtomicCheckpointIO()]}
    )
    # Data that shards DDP ranks itself (custom batch samplers) must not get Lightning's
    # DistributedSampler, unless the config says otherwise.
    if getattr(datamodule, "shards_itself", False) and "use_distributed_sampler" not in cfg.trainer:
        extra["use_distributed_sampler"] = False
    try:
        return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **extra)
    except InstantiationException as error:  # Lightning names the value and the valid ones
        cause = error.__cause__ or error
        raise ConfigError(f"trainer: {type(cause).__name__}: {cause}") from error


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


def load_run_config(ckpt_path: str, checkpoint: dict[str, Any] | None = None) -> DictConfig:
    """The resolved training config saved inside an attnlab checkpoint."""
    checkpoint = checkpoint or _load_checkpoint(ckpt_path)
    config = checkpoint.get("hyper_parameters", {}).get("config")
    if config is None:
        raise ConfigError(f"ckpt_path={ckpt_path} holds no attnlab run config")
    return OmegaConf.create(config)


def load_trained_module(
    ckpt_path: str, data_overrides: DictConfig | dict | None = None
) -> tuple[DictConfig, pl.LightningDataModule, AttnLabModule]:
    """Rebuild data and module from an attnlab checkpoint and load its weights (on CPU)."""
    checkpoint = _load_checkpoint(ckpt_path)
    run_cfg = load_run_config(ckpt_path, checkpoint)
    with open_dict(run_cfg):
        if data_overrides:
            run_cfg.data = OmegaConf.merge(run_cfg.data, data_overrides)
        # The weights come from this checkpoint, not from where its training started ...
        run_cfg.model.pretrained = None
        # ... and so does the tokenizer, wherever the run kept its copy.
        if "tokenizer_path" in run_cfg.data and checkpoint.get("tokenizer"):
            run_cfg.data.tokenizer_path = _tokenizer_file(checkpoint, run_cfg.paths.cache_dir)
    datamodule = build_datamodule(run_cfg)
    module = build_module(run_cfg, datamodule)
    module.load_state_dict(checkpoint["state_dict"])
    return run_cfg, datamodule, module


def _load_checkpoint(ckpt_path: str) -> dict[str, Any]:
    check_checkpoint_path(ckpt_path)
    try:
        return torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as error:  # a truncated or foreign file: say which one
        raise ConfigError(f"ckpt_path={ckpt_path} is not a readable checkpoint: {error}") from error


def pretrained_tokenizer_file(ckpt_path: str, cache_dir: str | None) -> str:
    """Write the tokenizer saved in a checkpoint to the cache; returns its path."""
    checkpoint = _load_checkpoint(ckpt_path)
    if checkpoint.get("tokenizer") is None:
        raise ConfigError(f"model.pretrained={ckpt_path} holds no tokenizer to fine-tune with")
    return _tokenizer_file(checkpoint, cache_dir)


def _tokenizer_file(checkpoint: dict[str, Any], cache_dir: str | None) -> str:
    tokenizer = checkpoint["tokenizer"]
    name = f"{tokenizer['fingerprint']}.json"
    path = Path(cache_dir or default_cache_dir()) / "pretrained_tokenizers" / name
    if not path.is_file():  # named by content: an existing file is the same tokenizer
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(tokenizer["json"])
        tmp.replace(path)
    return str(path)


def load_pretrained_body(
    network: torch.nn.Module, ckpt_path: str, datamodule: pl.LightningDataModule
) -> None:
    """Copy the body (embeddings + blocks) of a pretrained checkpoint into `network`.

    Heads start fresh. Fails, naming what differs, when the tokenizers or tensor shapes differ.
    """
    if not hasattr(network, "load_body_state_dict"):
        raise ConfigError(f"model.pretrained: {type(network).__name__} cannot load a body")
    checkpoint = _load_checkpoint(ckpt_path)
    saved = (checkpoint.get("tokenizer") or {}).get("fingerprint")
    ours = getattr(getattr(datamodule, "tokenizer", None), "fingerprint", None)
    if saved != ours:
        raise ConfigError(
            f"model.pretrained={ckpt_path} was trained with tokenizer {saved}, but the data uses "
            f"{ours}; leave data.tokenizer_path unset to reuse the checkpoint's tokenizer"
        )
    state = {
        key.removeprefix("network."): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith("network.")
    }
    body = network.body_state_dict()
    mismatched = [
        f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(value.shape)}"
        for key, value in body.items()
        if key in state and state[key].shape != value.shape
    ]
    if mismatched:
        raise ConfigError(f"model.pretrained={ckpt_path} does not fit: " + "; ".join(mismatched))
    try:
        network.load_body_state_dict(state)
    except ValueError as error:
        raise ConfigError(f"model.pretrained={ckpt_path}: {error}") from error
