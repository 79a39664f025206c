"""Check a composed config's values before any work: types against the constructors'
annotations, sizes that cannot work. Every message names the key, the value and what is valid.

Hydra checks keys and group choices; nothing checks values until the object that takes them is
built, often minutes in (the Trainer's `max_epochs="abc"` fails inside the fit loop with
"'>' not supported between instances of 'int' and 'str'").
"""

from __future__ import annotations

import inspect
import logging
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

# Sections built from a `_target_`.
SECTIONS = ("model", "data", "task", "optimizer", "scheduler", "trainer")

# Sizes that must be positive, and other ranges, where a section has the key. The model's
# width, heads, dropout, ... are the network's own checks (models/config.py), run by
# _check_model; a run needs at least one layer even where a network could be built without.
POSITIVE = {
    "model": ("n_layers", "n_encoder_layers", "n_decoder_layers"),
    # an empty training or validation split trains nothing or leaves optimized_metric unlogged
    "data": (
        "batch_size",
        "max_len",
        "max_tokens",
        "num_train",
        "num_val",
        "num_train_tokens",
        "num_val_tokens",
    ),
    "optimizer": ("lr",),
    "trainer": ("accumulate_grad_batches",),  # 0 divides by zero in the fit loop
    "task": ("beam_size", "val_beam_size"),
}
NON_NEGATIVE = {
    "data": ("num_workers",),
    "optimizer": ("weight_decay",),
    # torch scales gradients by max_norm / norm: a negative max_norm turns descent into ascent
    "trainer": ("gradient_clip_val",),
    "scheduler": ("warmup_steps",),
}
# Other bounds: (lowest, highest or None, what is valid).
NO_LIMIT: tuple[float, float | None, str] = (-1, None, "must be -1 (no limit) or more")
BOUNDS = {
    "trainer": {"max_steps": NO_LIMIT, "max_epochs": NO_LIMIT},
    "task": {"label_smoothing": (0, 1, "must be a probability in [0, 1]")},
}
# The same for the top-level settings of a command (conf/<command>.yaml).
COMMAND_POSITIVE = {
    "generate": ("num_samples", "max_new_tokens"),
    "translate": ("batch_size", "beam_size"),
}
COMMAND_NON_NEGATIVE = {"generate": ("temperature",)}


class ValueCheckError(ValueError):
    """A config value of the wrong type or out of range (builders re-raises it as ConfigError)."""


def check_values(cfg: DictConfig) -> None:
    """Raise ValueCheckError naming `section.key`, its value and the valid values."""
    for section in SECTIONS:
        node = cfg.get(section)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        values = OmegaConf.to_container(node, resolve=True)
        hints = _hints(values["_target_"])
        for name, value in values.items():
            if name.startswith("_") or name not in hints:
                continue
            if not _matches(value, hints[name]):
                raise ValueCheckError(
                    f"{section}.{name}={value!r} is not valid: expected {_describe(hints[name])}"
                )
        _check_ranges(
            f"{section}.", values, POSITIVE.get(section, ()), NON_NEGATIVE.get(section, ())
        )
        _check_bounds(f"{section}.", section, values)
    _check_model(cfg)
    for section in ("task", "optimizer"):
        _check_own_arguments(cfg, section)
    seed = cfg.get("seed")
    if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool)):
        raise ValueCheckError(f"seed={seed!r} is not valid: expected int or null (no seeding)")


def check_command_values(command: str, cfg: DictConfig) -> None:
    """The ranges of a command's own settings (`attnlab-generate num_samples=0`)."""
    values = OmegaConf.to_container(cfg, resolve=False)
    _check_ranges(
        "", values, COMMAND_POSITIVE.get(command, ()), COMMAND_NON_NEGATIVE.get(command, ())
    )


def _check_ranges(
    prefix: str, values: Mapping[str, Any], positive: Sequence[str], non_negative: Sequence[str]
) -> None:
    def bad(name: str, valid: str) -> ValueCheckError:
        return ValueCheckError(f"{prefix}{name}={values[name]!r} is not valid: {valid}")

    for name in positive:
        value = values.get(name)
        if value is not None and not (_is_number(value) and value > 0):
            raise bad(name, "must be a positive number")
    for name in non_negative:
        value = values.get(name)
        if _is_number(value) and value < 0:
            raise bad(name, "must be 0 or more")


def _check_bounds(prefix: str, section: str, values: Mapping[str, Any]) -> None:
    for name, (low, high, valid) in BOUNDS.get(section, {}).items():
        value = values.get(name)
        if _is_number(value) and not (value >= low and (high is None or value <= high)):
            raise ValueCheckError(f"{prefix}{name}={value!r} is not valid: {valid}")


def check_numbers(prefix: str, section: str, values: Mapping[str, Any]) -> None:
    """The ranges of `section`'s numbers, needing no torch (run/early_checks.py); a value of
    another type is left to check_values, which knows the type it should have."""
    numbers = {name: value for name, value in values.items() if _is_number(value)}
    _check_ranges(prefix, numbers, POSITIVE.get(section, ()), NON_NEGATIVE.get(section, ()))
    _check_bounds(prefix, section, numbers)


# The ModelConfig of each checked `model` config, by its settings (`settings_key`):
# build_network hands it to the network, so a run validates and builds it once.
_CHECKED_MODELS: dict[tuple[Any, ...], Any] = {}


def checked_model_config(network_cls: Any, values: Mapping[str, Any]) -> Any:
    """The ModelConfig `_check_model` built for these `model` values, or None."""
    if not hasattr(network_cls, "settings_key"):
        return None
    return _CHECKED_MODELS.get(network_cls.settings_key(values))


def _check_model(cfg: DictConfig) -> None:
    """The network's own checks of its arguments (ChecksArguments, attnlab/protocols.py):
    width and heads, names of activations, norms and position schemes, pooling, ...; the
    ModelConfig they build is kept for build_network (`checked_model_config`)."""
    model = cfg.get("model")
    if not isinstance(model, DictConfig) or "_target_" not in model:
        return
    # The networks need torch: imported here, when a job's config is checked.
    from attnlab.models.registry import network_class_of
    from attnlab.protocols import ChecksArguments

    values = OmegaConf.to_container(model, resolve=True)
    try:
        network_cls = network_class_of(values)
    except Exception:
        return  # instantiating it will say what is wrong
    if not isinstance(network_cls, ChecksArguments):
        return
    try:  # keys that are no constructor argument (run settings, `name`) are left out there
        config = network_cls.check_arguments(values)
    except ValueError as error:
        raise ValueCheckError(str(error)) from None
    if hasattr(network_cls, "settings_key"):
        if len(_CHECKED_MODELS) > 64:  # a long multirun pre-check: keep the newest only
            _CHECKED_MODELS.clear()
        _CHECKED_MODELS[network_cls.settings_key(values)] = config


def _check_own_arguments(cfg: DictConfig, section: str) -> None:
    """A section's own checks of its settings, where its target has a `check_arguments`
    (as networks have): task.loss_impl's choices and what they need, optimizer=muon's."""
    node = cfg.get(section)
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return
    values = OmegaConf.to_container(node, resolve=True)
    try:
        check = getattr(get_object(values["_target_"]), "check_arguments", None)
    except Exception:
        return  # instantiating it will say what is wrong
    if check is None:
        return
    try:
        check({k: v for k, v in values.items() if not k.startswith("_")})
    except ValueError as error:
        raise ValueCheckError(str(error)) from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _hints(target: str) -> dict[str, Any]:
    """The annotations of what `target` names (a class's __init__, or a function); {} when
    they cannot be resolved: such values are left to the constructor."""
    hydra_log = logging.getLogger("hydra.utils")
    level, hydra_log.level = hydra_log.level, logging.CRITICAL  # a bad target: instantiate says
    try:
        obj = get_object(target)
    except Exception:
        return {}
    finally:
        hydra_log.setLevel(level)
    if not inspect.isclass(obj):
        return _function_hints(obj)
    # A class's own arguments, those its **options pass to its bases' constructors, and those
    # they pass to its `source_class` (data/stable.py): the most specific hint wins.
    classes = [
        *reversed(obj.__mro__),
        *([obj.source_class] if hasattr(obj, "source_class") else []),
    ]
    hints: dict[str, Any] = {}
    for cls in classes:
        if "__init__" in vars(cls) and cls is not object:
            hints |= _function_hints(cls.__init__)
    return hints


def _function_hints(function: Any) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(function)
    except Exception:
        return {}
    hints.pop("return", None)
    return hints


def _args(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any or isinstance(hint, typing.TypeVar):
        return True
    if _is_union(hint):
        return any(_matches(value, arg) for arg in _args(hint))
    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return value in _args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return _is_number(value)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple and _args(hint) and ... not in _args(hint):  # tuple[float, float]
        return (
            isinstance(value, list | tuple)
            and len(value) == len(_args(hint))
            and all(_matches(v, h) for v, h in zip(value, _args(hint), strict=True))
        )
    container = origin or hint
    if inspect.isclass(container):
        if issubclass(container, str | bytes):
            return isinstance(value, str)
        if issubclass(container, Mapping):
            return isinstance(value, Mapping)
        if issubclass(container, Sequence) or container in (list, tuple, set):
            return isinstance(value, list | tuple)
    # Another class (an Accelerator, a Path, a timedelta ...): its constructor decides.
    return True


def _describe(hint: Any) -> str:
    if _is_union(hint):  # Literals of a union listed together: "one of 16, 32, 'bf16' or null"
        literals = [
            v for a in _args(hint) if typing.get_origin(a) is typing.Literal for v in _args(a)
        ]
        others = [_describe(a) for a in _args(hint) if typing.get_origin(a) is not typing.Literal]
        if literals:
            others.insert(0, "one of " + ", ".join(repr(v) for v in literals))
        return " or ".join(dict.fromkeys(others))
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in _args(hint))
    if typing.get_origin(hint) is tuple and _args(hint) and ... not in _args(hint):
        return f"a list of {len(_args(hint))}: [{', '.join(_describe(a) for a in _args(hint))}]"
    if typing.get_origin(hint) is not None:
        return getattr(typing.get_origin(hint), "__name__", str(hint))
    return getattr(hint, "__name__", str(hint))
