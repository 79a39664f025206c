"""OmegaConf resolvers used by the config tree."""

from __future__ import annotations

import os
import secrets
import weakref
from datetime import datetime
from importlib.resources import files
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict


def _run_id() -> str:
    # A random suffix makes run directories unique even when two runs start in the same second.
    # The resolver is cached per config, and Hydra copies that cache into every job of a sweep,
    # so all jobs of one sweep share one id.
    return secrets.token_hex(3)


def _run_dir(resume: str | None, new_dir: str) -> str:
    # `resume=<run dir>` continues in that directory (attnlab-train refuses one that does not
    # exist before Hydra would create it: run/resume_overrides.py); anything else gets a new one.
    return new_dir if resume in (None, "auto") else str(resume)


def _hydra_runtime(key: str) -> str | None:
    from hydra.core.hydra_config import HydraConfig

    return str(HydraConfig.get().runtime[key]) if HydraConfig.initialized() else None


def _launch_dir() -> str:
    # Hydra's runtime.cwd under attnlab-train; without a Hydra app (compose() in a notebook or
    # script), the working directory.
    return _hydra_runtime("cwd") or os.getcwd()


# Without a Hydra app: the run folder drawn for each config object (by id, with a weak
# reference to tell a new object at a reused id), so every read of one config agrees.
_drawn_dirs: dict[int, tuple[weakref.ref, str]] = {}


def _output_dir(log_dir: str, task_name: str, _root_: DictConfig) -> str:
    # Hydra's runtime.output_dir under attnlab-train (read afresh, never cached: Hydra copies
    # resolver caches into every job of a sweep); without a Hydra app, a fresh run folder
    # named as hydra/default.yaml names them.
    found = _hydra_runtime("output_dir")
    if found is not None:
        return found
    drawn = _drawn_dirs.get(id(_root_))
    if drawn is None or drawn[0]() is not _root_:
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        drawn = (weakref.ref(_root_), f"{log_dir}/{task_name}/runs/{stamp}_{secrets.token_hex(3)}")
        _drawn_dirs[id(_root_)] = drawn
    return drawn[1]


def _ladder_rung(key: str, rung: int | None = None, *, _root_: DictConfig) -> Any:
    # conf/ladder/*.yaml: the chosen rung's `key` (null where the rung leaves it out); `rung`
    # names another (rung 0: the μP base width). run/ladder_checks.py reports a bad rung
    # in one line before anything resolves this.
    ladder = _root_.ladder
    return ladder.rungs[ladder.rung if rung is None else rung].get(key)


def _command_groups(config_name: str) -> str:
    """`--help` of a command (conf/hydra/help/command.yaml): the groups that its config's
    defaults list names, each with its options."""
    conf = files("attnlab.conf")
    defaults = yaml.safe_load((conf / f"{config_name}.yaml").read_text()).get("defaults") or []
    lines = []
    for entry in defaults:
        if not isinstance(entry, dict):  # _self_
            continue
        group = next(iter(entry)).removeprefix("optional ").strip()
        folder = conf / group
        if group.startswith(("override ", "hydra")) or not folder.is_dir():
            continue
        options = sorted(
            p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml")
        )
        lines.append(f"{group}: {', '.join(options)}")
    return "\n".join(lines) or "(none)"


def _command_usage(config_name: str) -> str:
    """The leading comment of conf/<command>.yaml: what the command does, with its usage."""
    lines = (files("attnlab.conf") / f"{config_name}.yaml").read_text().splitlines()
    usage = []
    for line in lines:
        if not line.startswith("#"):
            break
        usage.append(line.removeprefix("#").removeprefix(" "))
    return "\n".join(usage)


# Accelerators whose matmuls want the vocabulary padded (conf/model/*.yaml vocab_pad_multiple).
PADDED_ACCELERATORS = ("gpu", "cuda")


def _vocab_pad_for(accelerator: str) -> int:
    # 64 rows a block on GPUs (tensor-core shapes; nanoGPT pads 50257 to 50304 the same way);
    # 1 elsewhere, where padding only adds work.
    return 64 if str(accelerator) in PADDED_ACCELERATORS else 1


def register_resolvers() -> None:
    """Register attnlab's resolvers (idempotent)."""
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", _run_id, use_cache=True)
    if not OmegaConf.has_resolver("run_dir"):
        OmegaConf.register_new_resolver("run_dir", _run_dir)
    if not OmegaConf.has_resolver("launch_dir"):
        OmegaConf.register_new_resolver("launch_dir", _launch_dir)
    if not OmegaConf.has_resolver("output_dir"):
        OmegaConf.register_new_resolver("output_dir", _output_dir)
    if not OmegaConf.has_resolver("ladder_rung"):
        OmegaConf.register_new_resolver("ladder_rung", _ladder_rung)
    if not OmegaConf.has_resolver("vocab_pad_for"):
        OmegaConf.register_new_resolver("vocab_pad_for", _vocab_pad_for)
    if not OmegaConf.has_resolver("command_groups"):
        OmegaConf.register_new_resolver("command_groups", _command_groups)
    if not OmegaConf.has_resolver("command_usage"):
        OmegaConf.register_new_resolver("command_usage", _command_usage)


def fix_output_dir(cfg: DictConfig) -> None:
    """Store paths.output_dir resolved: without a Hydra app it names a fresh folder per config
    object, which a copy of the unresolved config would draw anew."""
    if cfg.get("paths") is not None and "output_dir" in cfg.paths:
        with open_dict(cfg):
            cfg.paths.output_dir = str(cfg.paths.output_dir)
