"""Run-level settings: how a run starts and runs its network, as opposed to what the network is.

The `model` group holds the network's constructor arguments only. What used to sit beside them
lives here now (conf/init/default.yaml and the top-level keys of conf/train.yaml):

- `init.pretrained`: a checkpoint whose body (embeddings + blocks) the network starts from;
- `init.freeze_layers`: freeze the embeddings and the first N blocks;
- `init.body_lr_scale`: the body learns at lr * this (a pretrained body learns more slowly);
- `compile`: torch.compile the training step, the network's forward and the loss in one graph
  (run/assemble.py, CompiledTrainingStep); the network itself stays eager for generation;
  `compile_mode` and `compile_fullgraph` are torch.compile's `mode` and `fullgraph`;
- `fp8`: float8 matmuls in the linear layers through torchao (models/fp8.py), H100-class only;
- `tf32`: TensorFloat-32 for fp32 matmuls, on CUDA GPUs only;
- `async_checkpoint`: checkpoints written in a background thread (checkpoint_io.py).

Old keys fail on the command line with one line naming the new place; old checkpoints, whose
stored configs still have them under `model`, are translated when read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

# Old key -> new key.
MOVED_KEYS = {
    "model.pretrained": "init.pretrained",
    "model.freeze_layers": "init.freeze_layers",
    "model.body_lr_scale": "init.body_lr_scale",
    "model.compile": "compile",
}


# Top-level on/off settings of a run (conf/train.yaml).
SWITCHES = {
    "compile": False,
    "compile_fullgraph": False,
    "fp8": False,
    "tf32": True,
    "async_checkpoint": False,
}
# torch.compile's modes (torch._inductor.list_mode_options(), "default" included).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "lite")


def bad_switch_message(cfg: DictConfig) -> str | None:
    """One line for the first switch set to something other than true or false."""
    for key, default in SWITCHES.items():
        value = cfg.get(key, default)
        if not isinstance(value, bool):
            return f"{key}={value!r} is not valid: expected true or false"
    return None


def bad_compile_mode_message(cfg: DictConfig) -> str | None:
    """One line for a `compile_mode` torch.compile does not know."""
    mode = cfg.get("compile_mode", "default")
    if mode not in COMPILE_MODES:
        return f"compile_mode={mode!r} is not valid: choose from {', '.join(COMPILE_MODES)}"
    return None


def compile_options(cfg: Any) -> dict[str, Any]:
    """torch.compile's keyword arguments from `compile_mode` and `compile_fullgraph`."""
    mode = cfg.get("compile_mode", "default")
    return {
        "mode": None if mode == "default" else mode,
        "fullgraph": cfg.get("compile_fullgraph", False),
    }


def moved_key_message(old: str, value: object = None) -> str:
    shown = "<value>" if value is None else value
    return f"{old} moved: use {MOVED_KEYS[old]}={shown}"


def moved_keys_in_overrides(args: Sequence[str]) -> list[str]:
    """A message for each command-line override (`model.pretrained=x`, `+model.compile=true`)
    that sets a moved key."""
    messages = []
    for arg in args:
        if arg.startswith("-"):
            continue
        key, _, value = arg.partition("=")
        key = key.lstrip("+~")
        if key in MOVED_KEYS:
            messages.append(moved_key_message(key, value or None))
    return messages


def moved_keys_in_config(cfg: DictConfig) -> list[str]:
    """A message for each moved key a composed config still sets (an old experiment file, a
    personal conf/local, a `+model.pretrained=...` from Python)."""
    model = cfg.get("model")
    if not isinstance(model, DictConfig):
        return []
    values = OmegaConf.to_container(model, resolve=False)  # a ??? or ${...} value as written
    return [
        moved_key_message(old, values[old.removeprefix("model.")])
        for old in MOVED_KEYS
        if old.removeprefix("model.") in values
    ]


def upgrade_run_config(cfg: DictConfig) -> DictConfig:
    """Move the run-level keys of a config stored by an older attnlab (inside
    `hyper_parameters.config` of its checkpoints) to where they live now, in place."""
    _rename_moved_targets(cfg)
    model = cfg.get("model")
    if not isinstance(model, DictConfig):
        return cfg
    with open_dict(cfg):
        for old, new in MOVED_KEYS.items():
            leaf = old.removeprefix("model.")
            if leaf not in model.keys():  # noqa: SIM118 (`in model` skips a ??? value)
                continue
            value = model.pop(leaf)
            section, _, key = new.rpartition(".")
            target = cfg
            if section:
                if cfg.get(section) is None:
                    cfg[section] = {}
                target = cfg[section]
            if key not in target:
                target[key] = value
    return cfg


# Targets that moved: runs saved before the move to the `lightning` package (and before the
# run layer moved to attnlab/run/) hold the old names.
_RENAMED_TARGETS = {
    "pytorch_lightning.": "lightning.pytorch.",
    "lightning_fabric.": "lightning.fabric.",
    "attnlab.utils.distributed.": "attnlab.run.distributed.",
    "attnlab.utils.hydra_hooks.": "attnlab.run.hydra_hooks.",
}


def _rename_moved_targets(node: Any) -> None:
    """Every `_target_` of an old config that names a moved class renamed, in place."""
    if isinstance(node, DictConfig):
        for key, value in node.items_ex(resolve=False):
            if key == "_target_" and isinstance(value, str):
                for old, new in _RENAMED_TARGETS.items():
                    if value.startswith(old):
                        node[key] = new + value.removeprefix(old)
            else:
                _rename_moved_targets(value)
    elif isinstance(node, ListConfig):
        for item in node:
            _rename_moved_targets(item)
