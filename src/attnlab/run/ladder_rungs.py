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

from omegaconf import DictConfig, ListConfig, open_dict

from attnlab.run.errors import ConfigError
from attnlab.run.ladder_checks import RUNG_FIELDS, check_ladder, is_count, ladder_of

if TYPE_CHECKING:  # torch loads when a job runs: the checks here answer before it
    from torch import nn

    from attnlab.data import DataSpec

log = logging.getLogger(__name__)


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
    elif is_count(devices):
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
    if not is_count(seq_len):
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
    ladder = ladder_of(cfg)
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
