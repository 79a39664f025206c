"""Turn a checked config into the objects of a run: data, network + task (the module),
callbacks, loggers and the Trainer."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.accelerators import Accelerator, CUDAAccelerator
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from attnlab.data import DataSpec
from attnlab.loggers import is_wandb, wandb_arguments
from attnlab.module import AttnLabModule
from attnlab.run.checkpoint_io import AsyncAtomicCheckpointIO, AtomicCheckpointIO
from attnlab.run.distributed import FullyShardedStrategy
from attnlab.run.pretrained import freeze_layers, load_pretrained_body, pretrained_tokenizer_file
from attnlab.run.settings import compile_options
from attnlab.run.validation import (
    ConfigError,
    check_data_fits_task,
    chosen_options,
)
from attnlab.tasks import Task
from attnlab.utils.quiet import one_log_stream


def instantiate_section(cfg: DictConfig, key: str, **kwargs: Any) -> Any:
    """instantiate(cfg[key]); a bad value becomes a ConfigError that starts with the key."""
    node = OmegaConf.to_container(cfg[key], resolve=True)
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__ if isinstance(error.__cause__, ValueError | TypeError) else error
        raise ConfigError(f"{key}: {cause}") from error


def _init(cfg: DictConfig) -> DictConfig:
    return cfg.get("init") or OmegaConf.create({})


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    """The data; fine-tuning from `init.pretrained` reuses that checkpoint's tokenizer (and
    from `init.from_hf`, that directory's: train.check_config has set model.* and the
    tokenizer from it)."""
    pretrained = _init(cfg).get("pretrained")
    if pretrained and "tokenizer_path" in cfg.data and cfg.data.tokenizer_path is None:
        with open_dict(cfg):
            cfg.data.tokenizer_path = pretrained_tokenizer_file(pretrained, cfg.paths.cache_dir)
    return instantiate_section(cfg, "data")


def network_arguments(spec: DataSpec) -> dict[str, Any]:
    """What the network learns from the data: vocabulary size, classes for classifiers, and
    whether masked-LM pretraining predicts the next sentence too."""
    kwargs: dict[str, Any] = {"vocab_size": spec.vocab_size}
    if spec.num_classes is not None:
        kwargs["num_classes"] = spec.num_classes
    if spec.next_sentence:  # sentence pairs: a next-sentence head too
        kwargs["nsp"] = True
    # Separate source/target vocabularies (only EncoderDecoder takes tgt_vocab_size).
    if spec.tgt_vocab_size is not None and spec.tgt_vocab_size != spec.vocab_size:
        kwargs["tgt_vocab_size"] = spec.tgt_vocab_size
    return kwargs


def build_network(cfg: DictConfig, datamodule: pl.LightningDataModule) -> nn.Module:
    """The `model` group's network, sized by the data, started as `init` says."""
    check_data_fits_task(cfg, datamodule)
    network = _instantiate_network(cfg, network_arguments(datamodule.spec))
    init = _init(cfg)
    if init.get("pretrained"):
        load_pretrained_body(network, init.pretrained, datamodule)
    if init.get("from_hf"):
        from attnlab.interop.from_hf import load_hf_weights

        load_hf_weights(network, init.from_hf, datamodule)
    if init.get("freeze_layers"):
        freeze_layers(network, init.freeze_layers)
    if cfg.get("fp8", False):  # checked before any work: torchao and an H100-class GPU
        from attnlab.models.fp8 import convert_to_fp8

        names = convert_to_fp8(network)
        rank_zero_info(f"fp8: {len(names)} linear layers train in float8: {', '.join(names)}")
    return network


def _instantiate_network(cfg: DictConfig, arguments: dict[str, Any]) -> nn.Module:
    """The network, given the ModelConfig the value checks built (one per run) where there
    is one: the flat settings then only repeat it."""
    from attnlab.models.registry import network_class_of
    from attnlab.run.value_checks import checked_model_config

    values = OmegaConf.to_container(cfg.model, resolve=True)
    try:
        config = checked_model_config(network_class_of(values), values)
    except Exception:  # an unknown target: instantiating says what is wrong
        config = None
    if config is None:
        return instantiate_section(cfg, "model", **arguments)
    # Partial: Hydra would turn a dataclass argument into a config node; pass it directly.
    build = instantiate_section(cfg, "model", _partial_=True, **arguments)
    try:
        return build(config=config)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"model: {error}") from error


class CompiledTrainingStep:
    """A task's `step` whose training stage runs under torch.compile: the network's forward and
    the loss in one graph, so the logits' upcast and the cross-entropy fuse instead of keeping
    a (B, T, V) fp32 copy for backward.

    Validation and test stay eager (their decoding and metrics would break the graph and
    recompile at every new length), and so does the network itself: generation and sampling
    call it with growing KV caches. Parameter names, hence checkpoints, do not change.
    Under DDP the step runs inside DDP's forward, where dynamo splits the graph at DDP's
    gradient buckets (its DDPOptimizer), so all-reduces still overlap the backward.
    """

    def __init__(self, task: Task, **options: Any) -> None:
        self.eager = task.step
        self.compiled = torch.compile(task.step, **options)  # mode, fullgraph

    def __call__(self, network: Any, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        step = self.compiled if stage == "train" else self.eager
        return step(network, batch, stage)


def compile_training_step(task: Task, **options: Any) -> None:
    """`compile=true`: the task's training step (network + loss) compiled, in place, with
    torch.compile's `options` (`compile_mode`, `compile_fullgraph`: settings.compile_options)."""
    task.step = CompiledTrainingStep(task, **options)  # type: ignore[method-assign]


def compiles_per_unit(cfg: DictConfig) -> bool:
    """Under trainer=fsdp, compile=true compiles each sharded unit before fully_shard (the
    strategy does it: FullyShardedStrategy.shard), not the whole step over FSDP's hooks."""
    strategy = (cfg.get("trainer") or {}).get("strategy")
    target = strategy.get("_target_", "") if isinstance(strategy, DictConfig) else ""
    return target.endswith("FullyShardedStrategy")


def build_module(cfg: DictConfig, datamodule: pl.LightningDataModule) -> AttnLabModule:
    """Network + task + optimiser; the resolved config travels in every checkpoint."""
    network = build_network(cfg, datamodule)
    # Partial, as for the network: Hydra would turn the DataSpec into a config node, whose
    # attribute reads (spec.pad_id in a step) dynamo cannot trace without a graph break.
    try:
        task = instantiate_section(cfg, "task", _partial_=True)(spec=datamodule.spec)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"task: {error}") from error
    try:  # a network that does not implement its task's protocol (protocols.py)
        task.check_network(network)
    except TypeError as error:
        raise ConfigError(f"model: {error}") from None
    if cfg.get("compile", False) and not compiles_per_unit(cfg):
        compile_training_step(task, **compile_options(cfg))
    scheduler = instantiate_section(cfg, "scheduler") if cfg.get("scheduler") else None
    return AttnLabModule(
        network=network,
        task=task,
        optimizer=instantiate_section(cfg, "optimizer"),
        scheduler=scheduler,
        body_lr_scale=_init(cfg).get("body_lr_scale", 1.0),
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
    """The `logger.*` entries; W&B's name, group, tags and mode come from the run (loggers.py)."""
    loggers = []
    for entry in (cfg.get("logger") or {}).values():
        if not entry or "_target_" not in entry:
            continue
        extra = wandb_arguments(cfg, entry, chosen_options()) if is_wandb(entry) else {}
        loggers.append(instantiate(entry, **extra))
    return loggers


def use_tf32(cfg: DictConfig, accelerator: Accelerator) -> None:
    """`tf32` (default true): fp32 matmuls on a CUDA GPU use TensorFloat-32 tensor cores; other
    accelerators are left alone. Under mixed precision only the fp32 leftovers are affected."""
    if not isinstance(accelerator, CUDAAccelerator):
        return
    # Not the newer torch.backends.cuda.matmul.fp32_precision: Lightning's CUDA accelerator
    # reads torch.get_float32_matmul_precision(), which raises once only the new API was used.
    torch.set_float32_matmul_precision("high" if cfg.get("tf32", True) else "highest")


def checkpoint_io(cfg: DictConfig) -> AtomicCheckpointIO | AsyncAtomicCheckpointIO:
    """Atomic, checksummed checkpoint files; written in a background thread with
    `async_checkpoint=true` (docs/reliability.md)."""
    return AsyncAtomicCheckpointIO() if cfg.get("async_checkpoint", False) else AtomicCheckpointIO()


def build_trainer(
    cfg: DictConfig,
    callbacks: list[Callback],
    loggers: list[Logger],
    datamodule: pl.LightningDataModule | None = None,
) -> pl.Trainer:
    """The configured Trainer (`trainer.strategy` may be a strategy object's config)."""
    _check_accelerator(str(cfg.trainer.get("accelerator")))
    # Atomic checkpoint files, unless the config brings its own plugins.
    extra: dict[str, Any] = {} if cfg.trainer.get("plugins") else {"plugins": [checkpoint_io(cfg)]}
    # Data that shards DDP ranks itself (custom batch samplers) must not get Lightning's
    # DistributedSampler, unless the config says otherwise.
    if getattr(datamodule, "shards_itself", False) and "use_distributed_sampler" not in cfg.trainer:
        extra["use_distributed_sampler"] = False
    # callbacks.model_summary=null (or rich_progress_bar=null) means none: Lightning would add
    # its own otherwise (a summary with "Total FLOPs: 0", a bar whose frames fill a log file)
    for kind, switch in (
        (pl.callbacks.ModelSummary, "enable_model_summary"),
        (pl.callbacks.ProgressBar, "enable_progress_bar"),
    ):
        if not any(isinstance(c, kind) for c in callbacks) and switch not in cfg.trainer:
            extra[switch] = False
    one_log_stream()
    try:
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **extra)
    except InstantiationException as error:  # Lightning names the value and the valid ones
        cause = error.__cause__ or error
        raise ConfigError(f"trainer: {type(cause).__name__}: {cause}") from error
    use_tf32(cfg, trainer.accelerator)
    if cfg.get("compile", False) and isinstance(trainer.strategy, FullyShardedStrategy):
        trainer.strategy.compile_options = compile_options(cfg)
    return trainer


def _check_accelerator(accelerator: str) -> None:
    """A GPU asked for where there is none: one line naming the key (Lightning's error names
    neither the key nor a way out). Here, in the job, not in a multirun's pre-check, which may
    run on a login node without the GPUs its jobs get."""
    wants_cuda = accelerator == "cuda" or (
        accelerator == "gpu" and not torch.backends.mps.is_available()  # gpu: MPS on a Mac
    )
    if wants_cuda and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} is not valid here: this machine has no "
            "CUDA GPU that torch can see; use trainer=cpu (or trainer.accelerator=auto)"
        )
