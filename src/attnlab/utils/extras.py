"""Optional features and the extra that installs each (pyproject.toml's optional-dependencies).

The core install (no extras) has what training needs; W&B, TensorBoard, sweeps, comparison plots
and Hugging Face interop come with extras. A feature asked for without its packages stops
before any work with one line naming the extra: `require("wandb", extra="wandb")`.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

# The extra that provides each importable module.
EXTRA_OF = {
    "wandb": "wandb",
    "tensorboardX": "tensorboard",
    "tensorboard": "tensorboard",
    "optuna": "sweep",
    "sqlalchemy": "sweep",
    "hydra_plugins.hydra_submitit_launcher": "sweep",
    "submitit": "sweep",
    "matplotlib": "compare",
    "scipy": "compare",
    "transformers": "hf",
    "safetensors": "hf",
    "lm_eval": "lmeval",
    "accelerate": "lmeval",
    "torchao": "fp8",
}


class MissingExtraError(ImportError):
    """A feature was asked for whose optional packages are not installed."""


def install_hint(extra: str) -> str:
    return f"pip install 'attnlab[{extra}]'"


def is_installed(module: str) -> bool:
    """Whether `module` can be imported (without importing it; a parent package may be)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package; a module set to None
        return False


def require(*modules: str, extra: str | None = None, feature: str | None = None) -> None:
    """Raise MissingExtraError, one line naming the extra, unless every module is importable."""
    missing = [module for module in modules if not is_installed(module)]
    if not missing:
        return
    extra = extra or EXTRA_OF.get(missing[0], missing[0])
    what = feature or missing[0]
    raise MissingExtraError(
        f"{what} needs {', '.join(missing)}, which is not installed: {install_hint(extra)}"
    )


def any_installed(*modules: str) -> bool:
    return any(is_installed(module) for module in modules)


# --- the command line: features named by overrides, checked before Hydra starts -------------

# A logger option and what it needs (any one of the modules).
LOGGER_NEEDS = {
    "wandb": (("wandb",), "wandb"),
    "tensorboard": (("tensorboardX", "tensorboard"), "tensorboard"),
    "many": (("tensorboardX", "tensorboard"), "tensorboard"),  # csv + tensorboard
}
SUBMITIT = ("hydra_plugins.hydra_submitit_launcher", "submitit")


def missing_extras(args: Sequence[str]) -> list[str]:
    """One message per feature that the command line asks for and that is not installed:
    logger=wandb|tensorboard (also in a list), hparams_search=optuna, hydra/launcher=submitit_*
    or slurm. Loggers an experiment config sets are checked when the config is composed
    (`check_logger_extras`)."""
    messages = []
    for arg in args:
        key, _, value = arg.partition("=")
        key = key.lstrip("+~")
        if arg.startswith("-") or not value:
            continue
        if key == "logger":
            for option in value.strip("[]").split(","):
                needs = LOGGER_NEEDS.get(option.strip())
                if needs and not any_installed(*needs[0]):
                    messages.append(_message(f"logger={option.strip()}", needs[1]))
        elif key == "hparams_search" and value == "optuna":
            if not all(is_installed(module) for module in ("optuna", "sqlalchemy")):
                messages.append(_message("hparams_search=optuna", "sweep"))
        elif key == "hydra/launcher" and (value.startswith("submitit") or value == "slurm"):  # noqa: SIM102
            if not all(is_installed(module) for module in SUBMITIT):
                messages.append(_message(f"hydra/launcher={value}", "sweep"))
    return messages


def _message(feature: str, extra: str) -> str:
    return f"{feature} needs the optional packages of attnlab[{extra}]: {install_hint(extra)}"


# Hydra's flags that print and exit: nothing runs, so nothing is missing.
PRINT_ONLY = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion")


def exit_on_missing_extras(args: Sequence[str]) -> None:
    """The command line's features that are not installed: one line each, exit code 2."""
    if any(arg.split("=")[0] in PRINT_ONLY for arg in args):
        return
    messages = missing_extras(args)
    for message in messages:
        print(f"attnlab: {message}", file=sys.stderr)
    if messages:
        sys.exit(2)


# Logger classes (by `_target_`) and the modules they need (any one of them).
LOGGER_TARGETS = {
    "WandbLogger": (("wandb",), "wandb"),
    "TensorBoardLogger": (("tensorboardX", "tensorboard"), "tensorboard"),
}


def logger_extra_message(entry_name: str, target: str) -> str | None:
    """What a `logger.<name>` entry whose class is `target` lacks, as one line; None if nothing."""
    needs = LOGGER_TARGETS.get(target.rpartition(".")[2])
    if needs is None or any_installed(*needs[0]):
        return None
    return _message(f"logger.{entry_name} ({target})", needs[1])
