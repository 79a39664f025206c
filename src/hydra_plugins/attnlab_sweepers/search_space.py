"""An Optuna search's space in Hydra's sweep syntax (`params`, then the command line, later
wins): interval, tag(log, interval), range and choice become Optuna distributions; a plain
value takes its key out of the search and goes to every trial unchanged."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
)
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

# The override each trial's job gets: the pruning callback finds its trial with it.
TRIAL_KEY = "hydra.sweeper.trial_number"


def distribution(override: Override) -> BaseDistribution | None:
    """The Optuna distribution of a sweep override; None for a plain value."""
    if not override.is_sweep_override():
        return None
    value = override.value()
    key = override.get_key_element()
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep)
        start, stop, step = value.start, value.stop, value.step
        if not value.shuffle and all(isinstance(v, int) for v in (start, stop, step)) and step > 0:
            last = start + step * ((stop - 1 - start) // step)  # range() leaves `stop` out
            return IntDistribution(start, last, step=step)
    choices = list(override.sweep_iterator())
    assert isinstance(value, ChoiceSweep | RangeSweep)
    bad = [c for c in choices if not isinstance(c, str | int | float | bool | type(None))]
    if bad:
        raise ValueError(
            f"{key}: a choice in an Optuna search is a number, string, boolean or null, "
            f"not {bad[0]!r}"
        )
    return CategoricalDistribution(choices)


@dataclass
class SearchSpace:
    """What a search samples and what every trial gets unchanged."""

    distributions: dict[str, BaseDistribution]  # config key -> Optuna distribution
    fixed: list[str]  # overrides given to every trial, as typed
    prefixes: dict[str, str]  # `+`/`++` of sampled keys the command line adds to the config

    def overrides(self, params: Mapping[str, Any], trial_number: int) -> list[str]:
        """A trial's overrides: the fixed ones, its sampled values, and its number (for the
        pruning callback; a Hydra override, so not among the run's own overrides)."""
        sampled = [
            f"{self.prefixes.get(key, '')}{key}={override_value(value)}"
            for key, value in params.items()
        ]
        return [*self.fixed, *sampled, f"{TRIAL_KEY}={trial_number}"]


def search_space(params: Mapping[str, Any] | None, arguments: Sequence[str]) -> SearchSpace:
    """The search space of `params` (config key -> sweep expression) and the command line's
    overrides: for a key given twice the later wins, and a plain value takes the key out of
    the search."""
    lines = [f"{key}={value}" for key, value in (params or {}).items()]
    parsed = OverridesParser.create().parse_overrides([*lines, *arguments])
    last: dict[str, Override] = {}
    for override in parsed:
        key = override.get_key_element().lstrip("+~")
        last.pop(key, None)  # re-inserted at the end: the command line's order
        last[key] = override
    space = SearchSpace({}, [], {})
    for key, override in last.items():
        dist = distribution(override)
        if dist is None:
            space.fixed.append(override.input_line)
            continue
        space.distributions[key] = dist
        if override.is_force_add() or override.is_add():
            space.prefixes[key] = "++" if override.is_force_add() else "+"
    return space


_PLAIN = re.compile(r"[\w.\-+/:@]*")


def override_value(value: Any) -> str:
    """A sampled value as Hydra reads it back: null, true/false, numbers, quoted strings."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and not (_PLAIN.fullmatch(value) and value):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)
