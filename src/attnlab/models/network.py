"""How a network turns its keyword arguments into a ModelConfig, and checks them all first.

The networks take the settings of their blocks (ModelConfig's fields) as keyword arguments,
flat as conf/model/*.yaml writes them: `DecoderOnly(vocab_size, d_model=..., dropout=...)`.
Each declares its own defaults for them (`setting_defaults`, over ModelConfig's).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

from attnlab.models.config import MODEL_SETTINGS, ModelConfig


class ConfiguredNetwork:
    """Mixin of a network whose `**settings` keyword arguments make its ModelConfig.

    `check_arguments` validates every argument (the ModelConfig's and the network's own)
    without building anything: the constructor calls it first (through `configure`), and
    `run/value_checks.py` calls it on the `model` config before any work.
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
    def with_defaults(cls, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """`arguments` completed by the constructor's and `setting_defaults`' defaults."""
        parameters = inspect.signature(cls).parameters
        names = {n for n, p in parameters.items() if p.kind is not p.VAR_KEYWORD} | MODEL_SETTINGS
        defaults = {n: p.default for n, p in parameters.items() if p.default is not p.empty}
        defaults |= cls.setting_defaults
        return defaults | {k: v for k, v in arguments.items() if k in names}

    def configure(self, arguments: Mapping[str, Any], settings: Mapping[str, Any]) -> ModelConfig:
        """A network constructor's first line: `config = self.configure(locals(), settings)`.

        Checks every argument before anything is built, then initialises the nn.Module and
        sets `config`, `d_model` and `max_len`.
        """
        unknown = sorted(set(settings) - MODEL_SETTINGS)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments {unknown}")
        config = self.check_arguments({**arguments, **settings})
        super().__init__()  # the next class in the network's MRO: nn.Module's side
        self.config = config
        self.d_model = config.d_model
        self.max_len = config.max_len
        return config
