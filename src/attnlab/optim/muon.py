"""Muon for the hidden matrices, AdamW for the rest: `optimizer=muon` (conf/optimizer/muon.yaml).

Muon (Jordan et al. 2024; torch.optim.Muon) orthogonalises each matrix's momentum with a few
Newton-Schulz steps, so every direction of a hidden layer's update moves at the same rate.
It is for hidden matrices only: embeddings, the LM head, norms and biases stay with AdamW (the
usual hybrid). Which matrices are hidden is μP's rule (models/mup.parameter_types: 2-D, not an
embedding, not a readout), through parameter_groups(hidden_apart=True): its `hidden/...`
groups go to Muon at `muon_lr` and `muon_weight_decay`, every other group to AdamW at `lr`.

μP (`model.parametrization=mup`): the AdamW groups keep μP's rates; the Muon groups do not
take μP's 1/width_mult. Muon's update has spectral norm ~1 and torch's "original" shape
scaling multiplies it by sqrt(max(1, fan_out / fan_in)), which is what the spectral condition
for feature learning asks of a hidden layer at any width (Yang, Simon & Bernstein 2023): the
rate that works at the base width should hold at others. Not measured here (docs/mup.md).

One torch Optimizer holds both kinds of groups, so Lightning, the schedulers (per-group lr,
`lr_scale` floors), gradient clipping and checkpoints see one optimiser; its step runs
torch's Muon on the Muon groups and torch's AdamW on the others, over the same group dicts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import AdamW, Muon, Optimizer

from attnlab.optim.adamw import fastest_update

HIDDEN = "hidden/"  # in the names of parameter_groups' hidden-matrix groups


class MuonAdamW(Optimizer):
    """Groups with `muon=True` step with torch.optim.Muon, the others with torch.optim.AdamW.

    `defaults["hidden_apart"]` tells the LightningModule to ask parameter_groups for the hidden
    matrices in groups of their own (AttnLabModule.build_optimizer).
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any], choice: dict) -> None:
        super().__init__(params, defaults | {"muon": False, "hidden_apart": True})
        self._choice = choice  # AdamW's fused / foreach
        self._link()

    def _link(self) -> None:
        """The two torch optimisers on this one's group dicts and state (again after a load,
        which replaces both)."""
        self._parts: list[Optimizer] = []
        for use_muon in (True, False):
            groups = [g for g in self.param_groups if g["muon"] == use_muon]
            if not groups:
                continue
            if use_muon:
                part: Optimizer = Muon([{"params": g["params"]} for g in groups], lr=1.0)
            else:
                part = AdamW([{"params": g["params"]} for g in groups], **self._choice)
            for mine, theirs in zip(groups, part.param_groups, strict=True):
                for key, value in theirs.items():
                    mine.setdefault(key, value)  # their flags (fused, nesterov, ...), our rates
            part.param_groups, part.state = groups, self.state
            self._parts.append(part)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for part in self._parts:
            part.step()
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._link()


def muon(
    params: Iterable[Any],
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.98),
    eps: float = 1e-9,
    weight_decay: float = 0.01,
    muon_lr: float = 0.02,
    muon_weight_decay: float = 0.01,
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_steps: int = 5,
    adjust_lr_fn: str = "original",
) -> MuonAdamW:
    """Muon (`muon_lr`, `muon_weight_decay`, momentum, nesterov, ns_steps, adjust_lr_fn: torch's
    meaning) on the `hidden/...` groups of parameter_groups, AdamW (`lr`, betas, eps,
    weight_decay) on the others; plain parameters (no groups) all go to AdamW.

    A Muon group keeps a pretrained body's slower rate (init.body_lr_scale) and carries
    `lr_scale` = its rate / lr, so that a schedule's floor (warmup_cosine's min_lr) scales too.
    """
    check_arguments({"adjust_lr_fn": adjust_lr_fn})
    groups = [g if isinstance(g, dict) else {"params": [g]} for g in params]
    for group in groups:
        if HIDDEN not in group.get("name", ""):
            continue
        # body factor: the group's rate over the base lr, μP's 1/width_mult taken out
        base = group.get("lr", lr) / group.get("lr_scale", 1.0)
        group |= {"muon": True, "lr": muon_lr * base / lr, "weight_decay": muon_weight_decay}
        group |= {"lr_scale": group["lr"] / lr, "eps": 1e-7}  # Muon's eps: its normalisation
        group |= {"momentum": momentum, "nesterov": nesterov, "ns_steps": ns_steps}
        group["adjust_lr_fn"] = adjust_lr_fn
    adam_groups = [g for g in groups if not g.get("muon")]
    defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
    return MuonAdamW(groups, defaults, fastest_update(adam_groups) if adam_groups else {})


def check_arguments(values: dict[str, Any]) -> None:
    """The config's checks, before any work (run/value_checks.py)."""
    adjust = values.get("adjust_lr_fn", "original")
    if adjust not in ("original", "match_rms_adamw"):
        raise ValueError(
            f"optimizer.adjust_lr_fn={adjust!r} is not valid: original or match_rms_adamw"
        )


muon.check_arguments = check_arguments  # type: ignore[attr-defined]
