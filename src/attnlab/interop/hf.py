"""The optional `transformers` dependency, imported only when export or import runs."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

from attnlab.build.validation import ConfigError
from attnlab.utils.extras import install_hint

INSTALL_HINT = install_hint("hf")


def transformers_module(purpose: str) -> ModuleType:
    """`transformers`, or a one-line ConfigError saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise ConfigError(f"{purpose} needs Hugging Face transformers: {INSTALL_HINT}") from None
    return transformers


def show(value: Any) -> str:
    """A value as it is written on the command line (true, null, 1e-05, learned)."""
    return value if isinstance(value, str) else json.dumps(value)
