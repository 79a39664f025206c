"""Attention variants of users: a mask or a score change, its settings, one registration.

    def block_local(b, h, q_idx, kv_idx, settings):  # FlexAttention's mask_mod + settings
        return q_idx // settings["block_size"] == kv_idx // settings["block_size"]

    register_attention_variant("block_local", mask_mod=block_local, settings={"block_size": None})

From a module listed in `extensions=[...]`, this makes `model.block_size=16` a valid setting
of every network (on the command line and in `-m` sweeps: the entry point imports the
extensions before Hydra composes, see run/extensions.py). A variant is active where any of
its settings is not null; its mask is ANDed with the others of self-attention, its score_mod
(`score_mod(score, b, h, q_idx, kv_idx, settings)`) runs after the native ones (ALiBi's
bias, soft-capping). Settings are null or positive numbers unless `check` says otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from attnlab.models.checks import check_positive, invalid
from attnlab.models.masks import MaskMod
from attnlab.models.scores import ScoreMod


@dataclass(frozen=True)
class AttentionVariant:
    """One registered variant: a mask_mod or a score_mod taking `settings=` besides the
    FlexAttention arguments, and its settings with their defaults."""

    name: str
    settings: Mapping[str, Any]
    mask_mod: Callable[..., Any] | None = None
    score_mod: Callable[..., Any] | None = None
    check: Callable[[str, Any], None] | None = field(default=None)

    def active(self, values: Mapping[str, Any]) -> bool:
        return any(values.get(key) is not None for key in self.settings)


ATTENTION_VARIANTS: dict[str, AttentionVariant] = {}


# ModelConfig's own keys, which no variant's setting may take: filled by models/config.py
# (which imports this module, so this one cannot import it back).
RESERVED_KEYS: set[str] = set()


def register_attention_variant(
    name: str,
    *,
    settings: Mapping[str, Any],
    mask_mod: Callable[..., Any] | None = None,
    score_mod: Callable[..., Any] | None = None,
    check: Callable[[str, Any], None] | None = None,
) -> AttentionVariant:
    """Add a variant (exactly one of mask_mod, score_mod); its settings become model keys."""
    if (mask_mod is None) == (score_mod is None):
        raise ValueError(f"attention variant {name!r}: give exactly one of mask_mod, score_mod")
    if name in ATTENTION_VARIANTS:
        raise ValueError(f"attention variant {name!r} is registered already")
    taken = RESERVED_KEYS | set(variant_settings())
    clash = sorted(set(settings) & taken)
    if clash or not settings:
        raise ValueError(f"attention variant {name!r}: settings {clash or '{}'} clash or are empty")
    variant = AttentionVariant(name, dict(settings), mask_mod, score_mod, check)
    ATTENTION_VARIANTS[name] = variant
    _store_settings_node()
    return variant


def unregister_attention_variant(name: str) -> None:
    """Remove a registered variant (e.g. a test's, when it is done)."""
    del ATTENTION_VARIANTS[name]
    _store_settings_node()


def _store_settings_node() -> None:
    """Hydra's `attn_variants/registered` node: every variant setting with its default.
    conf/model/*.yaml merge it (an optional defaults entry), so `model.<setting>=...` is a
    known key on the command line and in sweeps once the extension is imported."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group="attn_variants", name="registered", node=variant_settings())


def variant_settings() -> dict[str, Any]:
    """Every registered variant's settings, with their defaults."""
    return {k: v for variant in ATTENTION_VARIANTS.values() for k, v in variant.settings.items()}


def check_variant_settings(values: Mapping[str, Any]) -> None:
    """Refuse a setting of a registered variant that is neither null nor valid."""
    for variant in ATTENTION_VARIANTS.values():
        for key in variant.settings:
            value = values.get(key)
            if value is None:
                continue
            if variant.check is not None:
                variant.check(key, value)
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise invalid(key, value, f"expected a number or null (variant {variant.name})")
            else:
                check_positive(key, value)


def active_mods(values: Mapping[str, Any]) -> tuple[list[MaskMod], list[ScoreMod]]:
    """The mask_mods and score_mods of the variants active under `values`, settings bound."""
    masks: list[MaskMod] = []
    scores: list[ScoreMod] = []
    for variant in ATTENTION_VARIANTS.values():
        if not variant.active(values):
            continue
        own = {key: values.get(key, default) for key, default in variant.settings.items()}
        if variant.mask_mod is not None:
            masks.append(functools.partial(variant.mask_mod, settings=own))
        else:
            assert variant.score_mod is not None
            scores.append(functools.partial(variant.score_mod, settings=own))
    return masks, scores
