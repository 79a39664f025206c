"""How each run's config differs from a reference run's (attnlab-compare --html): the keys of
`.hydra/config.yaml` whose values differ, run-folder paths left out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from attnlab.compare.runs import Run

# Keys that differ between any two runs of a sweep without making them different runs.
IGNORED = ("paths.", "hydra.")
MISSING = "(unset)"


def flat(config: Any, prefix: str = "") -> dict[str, Any]:
    """{"model": {"pos": "rope"}} -> {"model.pos": "rope"}; lists stay values."""
    if not isinstance(config, dict):
        return {prefix.removesuffix("."): config}
    out: dict[str, Any] = {}
    for key, value in config.items():
        out |= (
            flat(value, f"{prefix}{key}.")
            if isinstance(value, dict) and value
            else {f"{prefix}{key}": value}
        )
    return out


def run_config(path: Path) -> dict[str, Any] | None:
    """A job folder's composed config, flattened; None without `.hydra/config.yaml`."""
    file = path / ".hydra" / "config.yaml"
    if not file.is_file():
        return None
    return {k: v for k, v in flat(yaml.safe_load(file.read_text()) or {}).items()
            if not k.startswith(IGNORED)}  # fmt: skip


def differences(config: dict[str, Any], reference: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, reference value, this value) for every key whose value differs, in key order."""
    keys = sorted(set(config) | set(reference))
    return [
        (key, reference.get(key, MISSING), config.get(key, MISSING))
        for key in keys
        if config.get(key, MISSING) != reference.get(key, MISSING)
    ]


def reference_run(runs: list[Run], variant_of: dict[Path, str], baseline: str | None) -> Run | None:
    """The run the others are compared with: the baseline variant's first finished run (the
    first finished run of all without a baseline), or None when none has a config."""
    finished = [r for r in runs if r.status == "done" and run_config(r.path) is not None]
    preferred = [r for r in finished if baseline is not None and variant_of.get(r.path) == baseline]
    found = preferred or finished
    return found[0] if found else None
