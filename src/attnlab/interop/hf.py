"""The optional `transformers` dependency, imported only when export or import runs."""

from __future__ import annotations

import json
from collections.abc import Container, Mapping
from types import ModuleType
from typing import Any

from attnlab.utils.errors import ConfigError
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


def fixed_mismatches(
    config: Any, fixed: Mapping[str, Any], activations: Container[str]
) -> list[str]:
    """The knobs of `config` that differ from what an MHA target (GPT-2, BERT) fixes, as
    `model.key=value`: the fixed values, the activation, grouped-query attention."""
    wrong = [
        f"model.{k}={show(getattr(config, k))}" for k, v in fixed.items() if getattr(config, k) != v
    ]
    if config.activation not in activations:
        wrong.append(f"model.activation={config.activation}")
    if config.n_kv_heads not in (None, config.n_heads):
        wrong.append(f"model.n_kv_heads={config.n_kv_heads}")
    return wrong


def attention_mismatches(config: Any) -> list[str]:
    """The attention variants no exported model has: windows, soft-capping, an extension's."""
    wrong = [
        f"model.{key}={show(getattr(config, key))}"
        for key in ("attn_window", "attn_softcap")
        if getattr(config, key) is not None
    ]
    wrong += [f"model.{k}={show(v)}" for k, v in config.attn_settings if v is not None]
    return wrong
