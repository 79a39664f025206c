"""Find and read checkpoints: the one `fit` resumes from, and the run config stored inside."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from attnlab.run.checkpoint_io import DamagedCheckpointError, read_checkpoint
from attnlab.run.folder import RunFolderError, missing_resume_message
from attnlab.run.settings import upgrade_run_config
from attnlab.run.validation import ConfigError

log = logging.getLogger(__name__)


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """The checkpoint `fit` starts from: `ckpt_path`, or with `resume` (or `ckpt_path=last`)
    the newest intact `*.ckpt` in this run's checkpoint directory (None, with a log line, if
    there is none yet: a requeued job that was stopped before its first checkpoint starts
    afresh). Each candidate is read and its checksum checked before any work: a damaged one is
    skipped with a warning naming it; if all are damaged, a ConfigError names each."""
    resume, ckpt_path = cfg.get("resume"), cfg.get("ckpt_path")
    if ckpt_path not in (None, "last"):
        if resume is not None:
            raise ConfigError(f"set either resume={resume} or ckpt_path={ckpt_path}, not both")
        # a damaged or foreign file fails here, before any work; fit takes what was read
        load_checkpoint(ckpt_path, keep=True)
        check_resume_keeps_run(cfg, ckpt_path, key="ckpt_path")
        return ckpt_path
    if resume is None and ckpt_path is None:
        return None
    if resume not in (None, "auto") and not Path(resume).is_dir():
        raise ConfigError(missing_resume_message(resume))
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
    intact, damaged = newest_intact(found, keep=True)  # what fit reads next: read once
    if intact is None:
        raise ConfigError(
            f"resume: every checkpoint in {directory} is damaged: " + "; ".join(damaged)
        )
    for message in damaged:
        log.warning("resume: skipping %s", message)
    check_resume_keeps_run(cfg, str(intact))
    return str(intact)


# What a resume cannot change: the network's shape (model, but not its dropout), the task, the
# data, and the optimizer's and scheduler's classes (their saved states fit only their own).
_FIXED_SECTIONS = ("model",)
_FIXED_KEYS = ("task._target_", "data._target_", "optimizer._target_", "scheduler._target_")
# Targets that build the same class: attnlab.optim.adamw returns torch's AdamW (runs saved
# before it existed resume with it).
_SAME_CLASS = {"torch.optim.AdamW": "attnlab.optim.adamw"}


def _flat(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}.{key}"))
        return out
    return {prefix: node}


def _fixed_values(config: DictConfig) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for section in _FIXED_SECTIONS:
        node = OmegaConf.select(config, section, default=None)
        if isinstance(node, DictConfig):
            values.update(_flat(OmegaConf.to_container(node, resolve=True), section))
    for key in _FIXED_KEYS:
        if key.split(".")[0] in config:  # a section set to null (scheduler=none) counts
            value = OmegaConf.select(config, key, default=None)
            values[key] = _SAME_CLASS.get(value, value)
    return {k: v for k, v in values.items() if "dropout" not in k.rsplit(".", 1)[-1]}


def check_resume_keeps_run(cfg: DictConfig, ckpt_path: str, key: str = "resume") -> None:
    """A resume that changes what cannot change (see _FIXED_KEYS) is refused, naming the key and
    both values, before the checkpoint's states meet a network or scheduler they do not fit."""
    try:  # the checkpoint newest_intact just read and kept for fit
        saved = load_run_config(ckpt_path, load_checkpoint(ckpt_path, keep=True))
    except ConfigError:  # a checkpoint without an attnlab config: nothing to compare
        return
    before, now = _fixed_values(saved), _fixed_values(cfg)
    # keys the build adds to a section (or a newer attnlab's defaults) are not changes
    for name in sorted(before.keys() & now.keys()):
        if before.get(name) != now.get(name):
            fresh = (
                "init.pretrained=<ckpt> (its weights only)" if key == "ckpt_path" else "a fresh run"
            )
            raise RunFolderError(
                f"{key}: {name} was {before.get(name)!r} in the run ({ckpt_path}) but is "
                f"{now.get(name)!r} now; continuing a run cannot change the model, task, data "
                f"or optimizer/scheduler class: leave the override out, or start {fresh}"
            )


def check_checkpoint_fits(cfg: DictConfig, module: Any, ckpt_path: str, key: str) -> None:
    """A checkpoint whose tensors have other shapes than the network built now is refused
    before fit loads it (`size mismatch`, with failure.json in a finished run): data of another
    tokenizer passes the config checks but gives another vocabulary."""
    checkpoint = load_checkpoint(ckpt_path, key, keep=True)  # the one fit reads next
    own = module.state_dict()
    for name, tensor in (checkpoint.get("state_dict") or {}).items():
        if name in own and tuple(own[name].shape) != tuple(tensor.shape):
            try:
                saved = _flat(OmegaConf.to_container(load_run_config(ckpt_path, checkpoint)), "")
            except ConfigError:
                saved = {}
            now = _flat(OmegaConf.to_container(cfg, resolve=True), "")
            changed = [
                f"{k[1:]}={saved[k]!r} -> {now[k]!r}"
                for k in sorted(saved.keys() & now.keys())
                if k.startswith(".data.") and saved[k] != now[k]
            ]
            raise RunFolderError(
                f"{key}: {name} is {list(tensor.shape)} in {ckpt_path} but "
                f"{list(own[name].shape)} in the network built now"
                + (f" (the data changed: {', '.join(changed)})" if changed else "")
                + "; continuing a run cannot change its data's vocabulary or its model: leave "
                "the override out, or start a fresh run"
            )


def newest_intact(candidates: list[Path], keep: bool = False) -> tuple[Path | None, list[str]]:
    """The newest of `candidates` that reads and matches its checksum, and one message for
    each newer one that does not. last.ckpt wins a tie: it is written after best.ckpt in the
    same step."""
    damaged: list[str] = []
    for path in sorted(
        candidates, key=lambda p: (p.stat().st_mtime, p.name == "last.ckpt"), reverse=True
    ):
        try:
            read_checkpoint(path, keep=keep)
        except DamagedCheckpointError as error:
            damaged.append(str(error))
            continue
        return path, damaged
    return None, damaged


def _intact_alternative(path: Path) -> str:
    """' The newest intact checkpoint beside it is X.' (or '') for a damaged `path`."""
    others = [
        p for p in path.parent.glob("*.ckpt") if p.is_file() and p.resolve() != path.resolve()
    ]
    intact, _ = newest_intact(others)
    return f"; the newest intact checkpoint beside it is {intact}" if intact else ""


def check_checkpoint_path(ckpt_path: str | None, key: str = "ckpt_path") -> None:
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise ConfigError(f"{key}={ckpt_path} does not exist (or is not a file)")


def load_checkpoint(ckpt_path: str, key: str = "ckpt_path", keep: bool = False) -> dict[str, Any]:
    """The checkpoint's contents, on CPU; a ConfigError naming the file if it cannot be read or
    does not match its checksum (and naming the newest intact checkpoint beside it, if any)."""
    check_checkpoint_path(ckpt_path, key)
    try:
        return read_checkpoint(ckpt_path, keep=keep)
    except DamagedCheckpointError as error:  # a truncated, damaged or foreign file: say which
        raise ConfigError(f"{key}={error}{_intact_alternative(Path(ckpt_path))}") from None


def load_run_config(ckpt_path: str, checkpoint: dict[str, Any] | None = None) -> DictConfig:
    """The resolved training config saved inside an attnlab checkpoint, with the run-level
    keys of older checkpoints moved to where they live now (settings.py)."""
    checkpoint = checkpoint or load_checkpoint(ckpt_path)
    config = checkpoint.get("hyper_parameters", {}).get("config")
    if config is None:
        raise ConfigError(f"ckpt_path={ckpt_path} holds no attnlab run config")
    return upgrade_run_config(OmegaConf.create(config))
