"""FP8 training of a network's linear layers through torchao's float8 (`fp8=true`).

torchao's `convert_to_float8_training` swaps nn.Linear modules for Float8Linear, whose matmuls
cast inputs, weights and gradients to float8 with dynamic per-tensor scales (torchtitan's
"tensorwise" recipe); the master weights stay in their dtype, so state_dict keys and shapes do
not change and checkpoints load into an unconverted network. Which layers: every linear layer
whose in and out features are multiples of 16 (float8 matmul shapes), except the readouts (LM
head, classifier), which stay in high precision as torchtitan leaves its output layer.
The kernels need an H100-class GPU (compute capability 8.9+); the run refuses fp8=true
elsewhere before any work (run/validation.py); the conversion itself runs on any device.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

from attnlab.models.heads import Readout

MIN_CAPABILITY = (8, 9)  # Ada / Hopper: float8 tensor cores


def fp8_refusal() -> str | None:
    """One line saying why fp8=true cannot run here, or None where it can."""
    if importlib.util.find_spec("torchao") is None:
        return (
            "fp8=true needs torchao's float8 training, which is not installed: "
            "pip install 'attnlab[fp8]'"
        )
    if not torch.cuda.is_available():
        return "fp8=true needs an H100-class CUDA GPU (float8 matmuls); none is visible here"
    capability = torch.cuda.get_device_capability()
    if capability < MIN_CAPABILITY:
        name = torch.cuda.get_device_name()
        return (
            f"fp8=true needs an H100-class GPU (compute capability 8.9 or more); {name} has "
            f"{capability[0]}.{capability[1]}"
        )
    return None


def fp8_layer_names(network: nn.Module) -> list[str]:
    """The linear layers fp8 converts: multiples of 16 on both sides, readouts excepted."""
    return [
        name
        for name, module in network.named_modules()
        if isinstance(module, nn.Linear)
        and not isinstance(module, Readout)
        and module.in_features % 16 == 0
        and module.out_features % 16 == 0
    ]


def convert_to_fp8(network: nn.Module) -> list[str]:
    """Swap the layers `fp8_layer_names` picks for torchao's Float8Linear, in place; returns
    their names."""
    from torchao.float8 import convert_to_float8_training

    chosen = set(fp8_layer_names(network))
    convert_to_float8_training(network, module_filter_fn=lambda module, fqn: fqn in chosen)
    return sorted(chosen)
