"""Optimiser parameter groups, the AdamW factory and learning-rate schedules."""

from attnlab.optim.adamw import adamw
from attnlab.optim.muon import MuonAdamW, muon
from attnlab.optim.param_groups import parameter_groups
from attnlab.optim.schedulers import constant, inverse_sqrt, warmup_cosine

__all__ = [
    "MuonAdamW",
    "adamw",
    "constant",
    "inverse_sqrt",
    "muon",
    "parameter_groups",
    "warmup_cosine",
]
