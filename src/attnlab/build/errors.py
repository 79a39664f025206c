"""The error of a config that cannot work; its own module, so that commands importing it to
report errors do not import torch (validation.py checks configs against the networks)."""


class ConfigError(ValueError):
    """A config that cannot work, reported before any work is done."""
