"""OmegaConf resolvers used by the config tree."""

from __future__ import annotations

import secrets
from importlib.resources import files

import yaml
from omegaconf import OmegaConf


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


def register_resolvers() -> None:
    """Register attnlab's resolvers (idempotent)."""
    if not OmegaConf.has_resolver("attempt_subdir"):
        OmegaConf.register_new_resolver("attempt_subdir", _attempt_subdir)
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", _run_id, use_cache=True)
    if not OmegaConf.has_resolver("run_dir"):
        OmegaConf.register_new_resolver("run_dir", _run_dir)
    if not OmegaConf.has_resolver("command_groups"):
        OmegaConf.register_new_resolver("command_groups", _command_groups)
    if not OmegaConf.has_resolver("command_usage"):
        OmegaConf.register_new_resolver("command_usage", _command_usage)
