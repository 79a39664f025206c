"""μP, the Maximal Update Parametrization (Yang et al., 2022, "Tensor Programs V").

Under `model.parametrization=mup` a network of width d_model = m * mup_base_width differs
from the standard parametrisation (sp) in four places, and at m = 1 in none (bit for bit):
- attention scores q·k * sqrt(base_d_head) / d_head: 1/d_head rather than 1/sqrt(d_head)
  (ModelConfig.attention_scale, passed to SDPA's `scale`, so the fused kernels stay);
- readouts (LM heads, classifiers: `heads.Readout`) multiply their input by 1/m;
- initialisation per parameter type (`parameter_types`): hidden matrices, whose fan-in grows
  with the width, get the base width's std times 1/sqrt(m) (var ~ 1/fan_in); embeddings,
  readouts and vectors (biases, norms) keep the base width's, independent of the width;
- Adam learning rates per type (optim/param_groups.py): hidden matrices lr / m, the rest lr.

A tied output projection is the embedding matrix itself: it keeps the embedding's
width-independent init and unscaled lr, and the LM head divides its input by m. That is what
μP asks of a readout written with an output multiplier (the `mup` package's MuSharedReadout).
Every hidden matrix's fan-in (d_model, d_ff or n_heads * d_head) is taken to grow with d_model,
as it does with the default d_ff = 4 * d_model: one ratio m serves them all.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attnlab.models.attention import MultiHeadAttention
from attnlab.models.config import ModelConfig
from attnlab.models.embedding import TokenEmbedding
from attnlab.models.heads import Readout

PARAMETER_TYPES = ("embedding", "hidden", "readout", "vector")
# How a network's sp initialisation depends on the width (see `apply_mup`):
# "fixed": N(0, 0.02) whatever the width (GPT-2, BERT); "xavier": Xavier-uniform matrices and
# N(0, d_model^-0.5) embeddings (the 2017 Transformer).
SP_INITS = ("fixed", "xavier")


def parameter_types(network: nn.Module) -> dict[str, str]:
    """The μP type of each parameter, by the name `named_parameters()` gives it (a tied tensor
    once, under its first name: a tied output projection is an "embedding").

    "vector": fewer than 2 dims (biases, norm gains, learned queries); "embedding": the weight
    of an nn.Embedding (tokens, positions, segments); "readout": the weight of a `Readout`
    (untied LM heads, classifiers), whose fan-out is fixed; "hidden": every other matrix.
    Types follow modules and names, so FSDP2's sharded parameters get the same ones.
    """
    embedding_ids = {id(m.weight) for m in network.modules() if isinstance(m, nn.Embedding)}
    readout_ids = {id(m.weight) for m in network.modules() if isinstance(m, Readout)}
    types = {}
    for name, param in network.named_parameters():
        if param.dim() < 2:
            types[name] = "vector"
        elif id(param) in embedding_ids:
            types[name] = "embedding"
        elif id(param) in readout_ids:
            types[name] = "readout"
        else:
            types[name] = "hidden"
    return types


def is_mup(network: nn.Module) -> bool:
    """Whether the network was built with parametrization=mup."""
    config = getattr(network, "config", None)
    return isinstance(config, ModelConfig) and config.parametrization == "mup"


def width_mult(network: nn.Module) -> float:
    """d_model / mup_base_width of a μP network; 1.0 under sp (or without a ModelConfig)."""
    return network.config.width_mult if is_mup(network) else 1.0


def lr_multipliers(network: nn.Module) -> dict[str, float]:
    """Each parameter's Adam learning-rate multiplier: 1 / width_mult for hidden matrices
    (Adam's update is ~lr per entry, so a matrix with fan-in n moves its outputs ~lr * n),
    1 for embeddings, readouts and vectors."""
    m = width_mult(network)
    return {n: 1.0 / m if t == "hidden" else 1.0 for n, t in parameter_types(network).items()}


@torch.no_grad()
def apply_mup(network: nn.Module, config: ModelConfig, sp_init: str) -> None:
    """Turn a freshly initialised sp network into its μP version (nothing under sp).

    Called last in the network's constructor, after its sp init and tying; draws no random
    numbers, so a μP network starts from the same draws as its sp twin, rescaled.
    sp_init (SP_INITS): how the sp init depends on the width, to rescale it to the base's.
    """
    if config.parametrization == "sp":
        return
    m = config.width_mult
    for module in network.modules():
        if isinstance(module, MultiHeadAttention):
            module.scale = config.attention_scale
        if isinstance(module, Readout):
            module.output_mult = 1.0 / m
    types = parameter_types(network)
    for name, param in network.named_parameters():
        kind = types[name]
        if sp_init == "fixed" and kind == "hidden":  # 0.02 at every width: 0.02 / sqrt(m)
            param.mul_(m**-0.5)
        elif sp_init == "xavier" and kind == "embedding":  # std d_model^-0.5: the base's
            param.mul_(m**0.5)
        elif sp_init == "xavier" and kind == "readout":  # Xavier's bound ~ 1/sqrt(in + out)
            out_features, in_features = param.shape
            param.mul_(math.sqrt((in_features + out_features) / (in_features / m + out_features)))
        # Xavier's hidden matrices already have var 2 / (fan_in + fan_out) ~ 1 / (m * base).
    if sp_init == "xavier":
        for module in network.modules():
            if isinstance(module, TokenEmbedding) and module.scale != 1.0:
                # sqrt(d_model) made N(0, 1/d_model) rows unit-sized; the base's now.
                module.scale = math.sqrt(config.d_model / m)
