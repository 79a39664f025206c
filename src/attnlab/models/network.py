"""How a network gets its ModelConfig: built once by the caller, or from flat keyword arguments.

The networks take the settings of their blocks either as one prebuilt ModelConfig
(`DecoderOnly(vocab_size, config=cfg)`: a run validates and builds it once, then hands it
down) or flat, as conf/model/*.yaml writes them and old checkpoints store them:
`DecoderOnly(vocab_size, d_model=..., dropout=...)`. Each network declares its own defaults
for them (`setting_defaults`, over ModelConfig's).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

from attnlab.models.attention_variants import variant_settings
from attnlab.models.config import MODEL_SETTINGS, ModelConfig


class ConfiguredNetwork:
    """Mixin of a network whose `config` or flat `**settings` make its ModelConfig.

    `check_arguments` validates every argument (the ModelConfig's and the network's own)
    and returns the ModelConfig: the constructor calls it through `resolve_config`, and
    `run/value_checks.py` on the `model` config before any work.
    """

    setting_defaults: ClassVar[dict[str, Any]] = {}  # this network's defaults of settings

    @classmethod
    def check_arguments(cls, arguments: Mapping[str, Any]) -> ModelConfig:
        """The ModelConfig of `arguments` (missing ones take this network's defaults; names
        that are no argument of it are ignored); raises ValueError, naming the key, on a bad
        value."""
        values = cls.with_defaults(arguments)
        config = ModelConfig.from_arguments(values)
        cls.check_own_arguments(values, config)
        return config

    @classmethod
    def check_own_arguments(cls, values: Mapping[str, Any], config: ModelConfig) -> None:
        """The network's checks beyond the ModelConfig's; vocab_size may be None (unknown
        before the data is built)."""

    @classmethod
    def constructor_defaults(cls) -> tuple[set[str], dict[str, Any]]:
        """The named arguments of the constructors along the MRO and their defaults (a
        subclass's `*args, **kwargs` hides none of its bases'); the most derived one wins."""
        names: set[str] = set()
        defaults: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            if not (isinstance(klass, type) and issubclass(klass, ConfiguredNetwork)):
                continue
            if "__init__" not in vars(klass):
                continue
            for name, p in inspect.signature(klass.__init__).parameters.items():
                if name in ("self", "config") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                    continue
                names.add(name)
                if p.default is not p.empty:
                    defaults[name] = p.default
        return names, defaults

    @classmethod
    def with_defaults(cls, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """`arguments` completed by the constructors' and `setting_defaults`' defaults."""
        names, defaults = cls.constructor_defaults()
        names |= MODEL_SETTINGS | set(variant_settings())
        defaults |= cls.setting_defaults
        return defaults | {k: v for k, v in arguments.items() if k in names}

    @classmethod
    def settings_key(cls, arguments: Mapping[str, Any]) -> tuple[Any, ...]:
        """What of `arguments` makes this network's ModelConfig, as a hashable key (for a
        caller that keeps the config it checked, to build the network with it)."""
        values = cls.with_defaults(arguments)
        names = MODEL_SETTINGS | set(variant_settings())
        return (cls, *sorted((k, repr(v)) for k, v in values.items() if k in names))

    @classmethod
    def resolve_config(
        cls,
        config: ModelConfig | None,
        own: Mapping[str, Any],
        settings: Mapping[str, Any],
    ) -> ModelConfig:
        """A constructor's first step: the checked ModelConfig, before anything is built.

        own: the network's own arguments (vocab_size, n_layers, pooling, ...); settings: the
        flat ModelConfig fields it was given. With `config`, settings must be left out (or
        repeat the config's values, as the positional d_model, n_heads, d_ff defaults do).
        """
        known = MODEL_SETTINGS | set(variant_settings())
        unknown = sorted(set(settings) - known)
        if unknown:
            raise TypeError(f"{cls.__name__} got unexpected keyword arguments {unknown}")
        if config is None:
            return cls.check_arguments({**own, **settings})
        _, defaults = cls.constructor_defaults()
        values = config.variant_values | {k: getattr(config, k) for k in MODEL_SETTINGS}
        clash = []
        for key, value in settings.items():
            if key in defaults and value == defaults[key]:
                continue  # a positional default (d_model=128), not a choice
            if value != values.get(key) and not (key == "d_ff" and value is None):
                clash.append(key)
        if clash:
            raise TypeError(
                f"{cls.__name__}: give {clash} in `config` or as keyword arguments, not both"
            )
        cls.check_own_arguments(cls.with_defaults(own), config)
        return config
