"""Weight decay on matrices only; μP's learning rates per parameter type."""

from __future__ import annotations

from typing import Any

from torch import nn

from attnlab.models.mup import is_mup, parameter_types, width_mult
from attnlab.protocols import PretrainedBody

FSDP1_PREFIX = "_fsdp_wrapped_module"  # in the names of parameters wrapped by FSDP1


def parameter_groups(
    network: nn.Module,
    weight_decay: float,
    decay_embeddings: bool = True,
    body_lr: float | None = None,
    lr: float | None = None,
    hidden_apart: bool = False,
) -> list[dict[str, Any]]:
    """Split parameters into decayed (matrices) and non-decayed (biases, norms) groups.

    Embedding tables are matrices too; `decay_embeddings=False` exempts them (GPT-style).
    `body_lr`: a learning rate of their own for the parameters the network calls its (pretrained)
    body, `network.is_body_parameter(name)` (a PretrainedBody, attnlab/protocols.py), in groups
    `body/decay` and `body/no_decay`.
    μP (`model.parametrization=mup`, models/mup.py): the hidden matrices go to groups of their
    own, `hidden/decay` (and `body/hidden/decay`), with learning rate lr / width_mult (`lr`, the
    optimiser's, is then needed) and weight decay weight_decay * width_mult, so that lr * wd,
    the fraction AdamW's decoupled decay takes per step, stays the base width's (as the `mup`
    package's MuAdamW). Each μP group carries its `lr_scale` (1 / width_mult or 1), which
    schedules with a floor (warmup_cosine's min_lr) scale too. Under sp the groups are as ever.
    Tied tensors appear once. Sharded by FSDP2 (trainer=fsdp), parameters keep their names and
    logical shapes, so the groups are those of the unsharded network; FSDP1 flattens them into
    1-D shards, which would put every matrix in no_decay, so it is refused.
    `hidden_apart`: the hidden matrices in `hidden/...` groups under sp too (rates unchanged),
    for an optimiser that treats them apart (optimizer=muon, optim/muon.py).
    """
    if body_lr is not None and not isinstance(network, PretrainedBody):
        raise ValueError(f"{type(network).__name__} has no pretrained body to give its own lr")
    mup = is_mup(network)
    types = parameter_types(network) if mup or hidden_apart else {}
    if mup and lr is None:
        raise ValueError("parameter_groups needs the optimiser's lr for μP's per-group rates")
    embedding_ids = {id(m.weight) for m in network.modules() if isinstance(m, nn.Embedding)}
    groups: dict[str, list[nn.Parameter]] = {}
    for name, param in network.named_parameters():  # each tied tensor once
        if FSDP1_PREFIX in name:
            raise ValueError(
                f"parameter {name!r} is an FSDP1 flattened shard: weight decay cannot be told "
                "from its shape; use trainer=fsdp (FSDP2), not trainer.strategy=fsdp"
            )
        if not param.requires_grad:
            continue
        exempt = param.dim() < 2 or (not decay_embeddings and id(param) in embedding_ids)
        group = "no_decay" if exempt else "decay"
        if types.get(name) == "hidden":  # μP: a matrix whose fan-in grows with the width
            group = f"hidden/{group}"
        if body_lr is not None and network.is_body_parameter(name):
            group = f"body/{group}"
        groups.setdefault(group, []).append(param)
    names = ["decay", "no_decay"] + (["body/decay", "body/no_decay"] if body_lr is not None else [])
    if mup or hidden_apart:
        names += ["hidden/decay"] + (["body/hidden/decay"] if body_lr is not None else [])
    scale = 1.0 / width_mult(network) if mup else 1.0
    return [
        _group(name, groups.get(name, []), weight_decay, body_lr, lr if mup else None, scale)
        for name in names
    ]


def _group(
    name: str,
    params: list[nn.Parameter],
    weight_decay: float,
    body_lr: float | None,
    mup_lr: float | None,
    hidden_scale: float,
) -> dict[str, Any]:
    """One optimiser group; under μP (`mup_lr` set) with its rate scaled and its `lr_scale`."""
    entry: dict[str, Any] = {
        "params": params,
        "weight_decay": 0.0 if name.endswith("no_decay") else weight_decay,
        "name": name,
        **({"lr": body_lr} if name.startswith("body/") else {}),
    }
    if mup_lr is not None:
        scale = hidden_scale if "hidden/" in name else 1.0
        base_lr = body_lr if name.startswith("body/") and body_lr is not None else mup_lr
        entry |= {"lr": base_lr * scale, "lr_scale": scale}
        entry["weight_decay"] /= scale  # lr * weight_decay as at the base width
    return entry
