"""Shared pieces of the Hugging Face interop tests: tiny networks with every weight moved off
its initial value, so a misplaced tensor shows in the logits."""

from __future__ import annotations

import zlib

import pytest
import torch

transformers = pytest.importorskip("transformers")

V, D, H, L, T_MAX = 37, 32, 4, 2, 24


@pytest.fixture(autouse=True)
def seed(request: pytest.FixtureRequest) -> int:
    """A seed of its own for every test (and parameter set), reproducible from the test id."""
    value = zlib.crc32(request.node.nodeid.encode())
    torch.manual_seed(value)
    return value


@torch.no_grad()
def perturb(network: torch.nn.Module) -> torch.nn.Module:
    """Move norms' gains and biases off 1/0 (and every other weight a bit) so they matter."""
    for p in network.parameters():
        p.add_(0.05 * torch.randn_like(p))
    return network.eval()


def padded_batch(vocab: int = V, length: int = T_MAX) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (3, length) and padding_mask (bool, True at the right-padded tail of two rows)."""
    ids = torch.randint(vocab, (3, length))
    lengths = torch.tensor([length, length - 9, 4])
    pad = torch.arange(length)[None, :] >= lengths[:, None]
    return ids.masked_fill(pad, 0), pad
