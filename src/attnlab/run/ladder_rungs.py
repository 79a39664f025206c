"""Scaling ladders (conf/ladder/*.yaml, docs/ladders.md): K model sizes ("rungs") and a
training budget per rung, so each variant can be trained at several sizes and a loss-vs-compute
law fitted to it (`attnlab-compare --ladder`).

`ladder=tiny_cpu ladder.rung=2` picks a rung. The ladder's config maps the rung's fields onto
the model (`model.d_model: ${ladder_rung:d_model}`, run/resolvers.py), so the composed and
printed config shows the rung's sizes. When a run starts and the data is loaded, apply_ladder
sizes the run from the budget, counted on the real network (built on the meta device):

    tokens    = ladder.tokens_per_param x non-embedding parameters    (r = 20 by default), or
    tokens    = ladder.flops / FLOPs per token                          (iso-FLOP curves)
    max_steps = ceil(tokens / tokens per step), rounded up to a multiple of the validation
                interval, so the last validation is at the last step
    tokens per step = data.batch_size x data.block_size x trainer.accumulate_grad_batches
                      x devices x num_nodes

and writes trainer.max_steps, trainer.val_check_interval (ladder.evals validations, the last at
the end; checkpoints follow validations), trainer.check_val_every_n_epoch=null,
trainer.max_epochs=-1, and scheduler.warmup_steps = ladder.warmup_fraction x max_steps where the
scheduler has warmup steps. The rung owns those keys: set the budget, not the steps.

metrics.json of a ladder run holds, besides everything a run writes (flops_per_token,
tokens_seen, training_flops = flops_per_token x tokens_seen, parameters, metrics), a `ladder`
record (LadderRecord) with what a fit needs in one place:

    name, rung, rungs (how many), sizes ({d_model, n_layers, n_heads, d_ff}),
    non_embedding_parameters (count_parameters(network)["non_embedding"]: token and learned
    position tables excluded), flops_per_token, budget ("tokens_per_param=20" or "flops=1e+15"),
    budget_tokens, tokens_per_step, max_steps, tokens_seen, training_flops, final_val_loss
    (val/loss of the last validation, at the last step)

μP: the ladder's `base_width` is rung 0's width, where a learning rate is tuned; the μP model
key (model.mup_base_width) takes it, so that rate transfers up the ladder (see the comment in
conf/ladder/*.yaml).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from attnlab.run.errors import ConfigError

if TYPE_CHECKING:  # torch loads when a job runs: the checks here answer before it
    from torch import nn

    from attnlab.data import DataSpec

log = logging.getLogger(__name__)

# What a rung gives; the ladder's config maps each onto the model (model.d_ff: null is the
# model's default, 4 x d_model).
REQUIRED_RUNG_FIELDS = ("d_model", "n_layers", "n_heads")
OPTIONAL_RUNG_FIELDS = ("d_ff",)
RUNG_FIELDS = REQUIRED_RUNG_FIELDS + OPTIONAL_RUNG_FIELDS


@dataclass(frozen=True)
class RungPlan:
    """How a ladder rung's run is sized (apply_ladder), before it trains."""

    name: str
    rung: int
    rungs: int
    sizes: dict[str, int | None]
    non_embedding_parameters: int
    flops_per_token: int | None
    budget: str  # "tokens_per_param=20" or "flops=1e+15"
    budget_tokens: int
    tokens_per_step: int
    max_steps: int
    val_every_steps: int
    warmup_steps: int | None

    def record(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """The `ladder` record of metrics.json, from the run's result (train.py)."""
        plan = asdict(self)
        plan.pop("val_every_steps")
        plan.pop("warmup_steps")
        return {
            **plan,
            # the trained network's own count (the same as the meta network's)
            "non_embedding_parameters": result["parameters"]["non_embedding"],
            "tokens_seen": result["tokens_seen"],
            "training_flops": result.get("training_flops"),
            "final_val_loss": result["metrics"].get("val/loss"),
        }


def _ladder(cfg: DictConfig) -> DictConfig | None:
    ladder = cfg.get("ladder")
    return ladder if isinstance(ladder, DictConfig) else None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_ladder(cfg: DictConfig) -> None:
    """A ladder that cannot size a run fails here, before any work, with one line naming the
    key, its value and the valid values. Nothing without `ladder=`."""
    ladder = _ladder(cfg)
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
    if not _is_count(evals):
        raise ConfigError(
            f"ladder.evals={evals!r} is not valid: validations per run, a positive integer "
            "(the last is at the last step)"
        )
    _check_model_follows_rung(cfg, ladder.rungs[rung], rung)


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
        if not _is_count(value):
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


def flops_per_token(task: Any, network: nn.Module, cfg: DictConfig) -> int | None:
    """Training FLOPs per token at the data's sequence length (None where the network does not
    estimate them): the one definition metrics.json and ladder budgets use."""
    seq_len = cfg.data.get("block_size") or cfg.data.get("max_len")
    return task.flops_per_token(network, seq_len) if seq_len else None


def world_size(trainer: DictConfig) -> int:
    """Processes that train together, from the trainer config: devices x num_nodes. `auto`
    (or -1) is what Lightning picks: 1 on CPU, every visible GPU otherwise."""
    devices = trainer.get("devices", 1)
    if isinstance(devices, str) and devices.lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, ListConfig | list | tuple):
        count = len(devices)
    elif _is_count(devices):
        count = devices
    else:
        import torch  # here: the config checks run before a job imports it

        if str(trainer.get("accelerator", "auto")) == "cpu" or not torch.cuda.is_available():
            count = 1
        else:
            count = torch.cuda.device_count()
    return count * int(trainer.get("num_nodes") or 1)


def tokens_per_step(cfg: DictConfig) -> int:
    """Tokens one optimiser step reads: batch x sequence x accumulation x processes."""
    seq_len = cfg.data.get("block_size")
    if not _is_count(seq_len):
        raise ConfigError(
            f"data.block_size={seq_len!r}: a ladder needs a causal LM's fixed windows "
            "(data.block_size) to count tokens per step"
        )
    accumulate = int(cfg.trainer.get("accumulate_grad_batches") or 1)
    return int(cfg.data.batch_size) * seq_len * accumulate * world_size(cfg.trainer)


def plan_rung(cfg: DictConfig, spec: DataSpec) -> RungPlan | None:
    """How this run's rung is sized (None without a ladder): the network is built on the meta
    device, as the run will build it, and its parameters and FLOPs counted."""
    check_ladder(cfg)
    ladder = _ladder(cfg)
    if ladder is None:
        return None
    import torch

    from attnlab.models.parameters import count_parameters
    from attnlab.run.assemble import instantiate_section, network_arguments

    with torch.device("meta"):  # shapes only: no memory, no time, even at GPT-2 size
        network = instantiate_section(cfg, "model", **network_arguments(spec))
    task = instantiate_section(cfg, "task", spec=spec)
    non_embedding = count_parameters(network)["non_embedding"]
    per_token = flops_per_token(task, network, cfg)
    if ladder.get("flops") is not None:
        if not per_token:
            raise ConfigError(
                f"ladder.flops={ladder.flops}: model={cfg.model._target_} does not estimate "
                "FLOPs per token; use ladder.tokens_per_param"
            )
        budget, tokens = f"flops={float(ladder.flops):g}", ladder.flops / per_token
    else:
        budget = f"tokens_per_param={ladder.tokens_per_param:g}"
        tokens = ladder.tokens_per_param * non_embedding
    per_step = tokens_per_step(cfg)
    steps = max(1, math.ceil(tokens / per_step))
    val_every = math.ceil(steps / ladder.evals)
    steps = val_every * ladder.evals  # the last validation at the last step
    fraction = ladder.get("warmup_fraction")
    warmup = None if fraction is None else (max(1, round(fraction * steps)) if fraction else 0)
    rung = ladder.rungs[ladder.rung]
    return RungPlan(
        name=str(ladder.get("name") or ""),
        rung=int(ladder.rung),
        rungs=len(ladder.rungs),
        sizes={field: rung.get(field) for field in RUNG_FIELDS},
        non_embedding_parameters=non_embedding,
        flops_per_token=per_token,
        budget=budget,
        budget_tokens=math.ceil(tokens),
        tokens_per_step=per_step,
        max_steps=steps,
        val_every_steps=val_every,
        warmup_steps=warmup,
    )


def apply_ladder(cfg: DictConfig, spec: DataSpec) -> RungPlan | None:
    """Size this run from its rung's budget (plan_rung), in `cfg`; None without a ladder."""
    plan = plan_rung(cfg, spec)
    if plan is None:
        return None
    accumulate = int(cfg.trainer.get("accumulate_grad_batches") or 1)
    with open_dict(cfg):
        cfg.trainer.max_steps = plan.max_steps
        cfg.trainer.max_epochs = -1
        # In training batches, counted across epochs (check_val_every_n_epoch=null).
        cfg.trainer.val_check_interval = plan.val_every_steps * accumulate
        cfg.trainer.check_val_every_n_epoch = None
        if plan.warmup_steps is not None and "warmup_steps" in (cfg.get("scheduler") or {}):
            cfg.scheduler.warmup_steps = plan.warmup_steps
    log.info(
        "ladder %s rung %d/%d %s: %d non-embedding parameters, %s -> %d tokens = %d steps of "
        "%d tokens, validating every %d steps",
        plan.name,
        plan.rung,
        plan.rungs,
        plan.sizes,
        plan.non_embedding_parameters,
        plan.budget,
        plan.budget_tokens,
        plan.max_steps,
        plan.tokens_per_step,
        plan.val_every_steps,
    )
    return plan
