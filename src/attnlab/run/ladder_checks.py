"""A scaling ladder's config checked before any work (ladder_rungs.py sizes the run): one
line naming the key, its value and the valid values."""

from __future__ import annotations

from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf

from attnlab.run.errors import ConfigError

# What a rung gives; the ladder's config maps each onto the model (model.d_ff: null is the
# model's default, 4 x d_model).
REQUIRED_RUNG_FIELDS = ("d_model", "n_layers", "n_heads")
OPTIONAL_RUNG_FIELDS = ("d_ff",)
RUNG_FIELDS = REQUIRED_RUNG_FIELDS + OPTIONAL_RUNG_FIELDS


def ladder_of(cfg: DictConfig) -> DictConfig | None:
    ladder = cfg.get("ladder")
    return ladder if isinstance(ladder, DictConfig) else None


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_ladder(cfg: DictConfig) -> None:
    """A ladder that cannot size a run fails here, before any work, with one line naming the
    key, its value and the valid values. Nothing without `ladder=`."""
    ladder = ladder_of(cfg)
    if ladder is None:
        return
    name = ladder.get("name") or "?"
    rungs = ladder.get("rungs")
    if not isinstance(rungs, ListConfig) or len(rungs) == 0:
        raise ConfigError(
            f"ladder.rungs={OmegaConf.to_container(rungs) if rungs is not None else None!r} is "
            f"not valid: ladder {name} needs a list of rungs, each with "
            + ", ".join(REQUIRED_RUNG_FIELDS)
        )
    for index, rung in enumerate(rungs):
        _check_rung(index, rung)
    rung = ladder.get("rung")
    if not (isinstance(rung, int) and not isinstance(rung, bool) and 0 <= rung < len(rungs)):
        raise ConfigError(
            f"ladder.rung={rung!r} is not valid: ladder {name} has rungs "
            f"{', '.join(str(i) for i in range(len(rungs)))}"
        )
    _check_budget(name, ladder)
    fraction = ladder.get("warmup_fraction")
    if fraction is not None and not (_is_number(fraction) and 0 <= fraction < 1):
        raise ConfigError(
            f"ladder.warmup_fraction={fraction!r} is not valid: a fraction of the steps in "
            "[0, 1), or null to leave scheduler.warmup_steps as it is"
        )
    evals = ladder.get("evals")
    if not is_count(evals):
        raise ConfigError(
            f"ladder.evals={evals!r} is not valid: validations per run, a positive integer "
            "(the last is at the last step)"
        )
    _check_model_follows_rung(cfg, ladder.rungs[rung], rung)
    _check_steps_follow_budget(name, ladder)


def _check_rung(index: int, rung: Any) -> None:
    key = f"ladder.rungs[{index}]"
    if not isinstance(rung, DictConfig):
        raise ConfigError(
            f"{key}={rung!r} is not valid: a rung is a mapping with "
            + ", ".join(REQUIRED_RUNG_FIELDS)
            + f" (optional: {', '.join(OPTIONAL_RUNG_FIELDS)})"
        )
    for field in rung:
        if field not in RUNG_FIELDS:
            raise ConfigError(
                f"{key}.{field}={rung[field]!r} is not valid: a rung's fields are "
                + ", ".join(RUNG_FIELDS)
            )
    for field in RUNG_FIELDS:
        value = rung.get(field)
        if value is None and field in OPTIONAL_RUNG_FIELDS:
            continue
        if value is None:
            raise ConfigError(
                f"{key}.{field} is missing: each rung needs "
                + ", ".join(REQUIRED_RUNG_FIELDS)
                + f" (optional: {', '.join(OPTIONAL_RUNG_FIELDS)})"
            )
        if not is_count(value):
            raise ConfigError(f"{key}.{field}={value!r} is not valid: must be a positive integer")


def _check_budget(name: str, ladder: DictConfig) -> None:
    flops, per_param = ladder.get("flops"), ladder.get("tokens_per_param")
    if flops is not None and not (_is_number(flops) and flops > 0):
        raise ConfigError(
            f"ladder.flops={flops!r} is not valid: training FLOPs per rung, a positive number "
            "(or null for ladder.tokens_per_param)"
        )
    if per_param is not None and not (_is_number(per_param) and per_param > 0):
        raise ConfigError(
            f"ladder.tokens_per_param={per_param!r} is not valid: tokens per non-embedding "
            "parameter, a positive number (20: Chinchilla's ratio)"
        )
    if flops is None and per_param is None:
        raise ConfigError(
            f"ladder {name} has no budget: set ladder.tokens_per_param (tokens = r x "
            "non-embedding parameters, e.g. 20) or ladder.flops (training FLOPs per rung)"
        )


def _check_model_follows_rung(cfg: DictConfig, rung: DictConfig, index: int) -> None:
    """Each rung field the model has is the rung's: a command-line `model.d_model=...` (or a
    ladder config that forgets to map one) would train a size the rung does not name."""
    model = cfg.get("model")
    if not isinstance(model, DictConfig):
        return
    for field in RUNG_FIELDS:
        wanted = rung.get(field)
        if wanted is None or field not in model:
            continue
        value = model[field]
        if value != wanted:
            raise ConfigError(
                f"model.{field}={value!r} is not valid with ladder.rung={index}: the rung sets "
                f"{field}={wanted}; choose sizes with ladder.rung (or edit ladder.rungs)"
            )


# What a rung's budget sets (ladder_rungs.py): given on the command line, it would be replaced.
SET_BY_LADDER = ("trainer.max_steps", "trainer.max_epochs", "trainer.val_check_interval")


def _check_steps_follow_budget(name: str, ladder: DictConfig) -> None:
    """`ladder=tiny_cpu trainer.max_steps=7` trained the budget's 124 steps, silently."""
    if not HydraConfig.initialized():
        return
    keys = SET_BY_LADDER + (("scheduler.warmup_steps",) if ladder.get("warmup_fraction") else ())
    for line in HydraConfig.get().overrides.task:
        key = line.split("=", 1)[0].lstrip("+~")
        if key in keys:
            raise ConfigError(
                f"{line} is not valid with ladder={name}: the rung's budget sets {key} "
                "(ladder.tokens_per_param or ladder.flops, ladder.evals, "
                "ladder.warmup_fraction); change those, or leave ladder= out"
            )
