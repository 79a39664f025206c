"""The checks that need no torch, run before anything imports it: a refused value answers in
about a second instead of after torch and Lightning have loaded (docs/benchmarks.md, start-up).

Numbers out of range (value_checks' tables; a value of the wrong type is left to the type check
that follows), data.min_len above data.max_len, a data directory that is a file, and the names
of the built-in networks' choices (model.pos, model.norm, model.activation) while no module
that could register more position schemes is loaded. The full checks run after these.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from attnlab.run.value_checks import SECTIONS, ValueCheckError, check_numbers
from attnlab.utils.errors import ConfigError

# The built-in networks' choices (tests/test_errors.py checks them against models/).
BUILTIN_CHOICES = {
    "pos": ("sinusoidal", "learned", "rope", "alibi", "none"),
    "norm": ("layernorm", "rmsnorm"),
    "activation": ("relu", "gelu", "gelu_tanh", "swiglu"),
}
# Where more position schemes are registered: once loaded, its table is the one to read.
SCHEMES_MODULE = "attnlab.models.position_schemes"
BUILTIN_NETWORKS = ("attnlab.models.EncoderDecoder", "attnlab.models.DecoderOnly")
BUILTIN_NETWORKS += ("attnlab.models.EncoderOnly",)


def check_before_torch(cfg: DictConfig) -> None:
    """Raise ConfigError naming the key, the value and what is valid."""
    try:
        _check(cfg)
    except ValueCheckError as error:
        raise ConfigError(str(error)) from None


def _check(cfg: DictConfig) -> None:
    for section in SECTIONS:
        node = cfg.get(section)
        if isinstance(node, DictConfig):
            check_numbers(f"{section}.", section, OmegaConf.to_container(node, resolve=True))
    data = cfg.get("data") or {}
    low, high = data.get("min_len"), data.get("max_len")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        raise ValueCheckError(
            f"data.min_len={low} is not valid: must be at most data.max_len={high}"
        )
    data_dir = (cfg.get("paths") or {}).get("data_dir")
    if data_dir and Path(data_dir).exists() and not Path(data_dir).is_dir():
        raise ValueCheckError(
            f"paths.data_dir={data_dir} is not valid: a file, not a directory (set "
            "ATTNLAB_DATA_DIR or paths.data_dir to the folder that holds the datasets)"
        )
    _check_model_names(cfg.get("model"))


def _check_model_names(model: DictConfig | None) -> None:
    if not isinstance(model, DictConfig) or model.get("_target_") not in BUILTIN_NETWORKS:
        return
    for key, builtin in BUILTIN_CHOICES.items():
        value = model.get(key)
        choices = list(builtin)
        if key == "pos" and SCHEMES_MODULE in sys.modules:
            choices = list(sys.modules[SCHEMES_MODULE].POSITION_SCHEMES)
        if value is not None and value not in choices:  # as models/checks.py words it
            raise ValueCheckError(f"model.{key}={value!r} is not valid: choose one of {choices}")
