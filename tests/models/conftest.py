"""Shared fixtures for the model tests."""

from __future__ import annotations

import zlib

import pytest
import torch
import torch.nn.functional as F

from attnlab.models import MultiHeadAttention


@pytest.fixture(autouse=True)
def seed(request: pytest.FixtureRequest) -> int:
    """Seed torch differently for every test (and parameter set), reproducibly.

    The seed is derived from the test id, so each test draws its own random inputs and a
    failure replays identically.
    """
    value = zlib.crc32(request.node.nodeid.encode())
    torch.manual_seed(value)
    return value


@pytest.fixture(autouse=True)
def single_thread():
    """Run each test on one intra-op thread, restoring the setting afterwards.

    These tensors are tiny, so threads buy nothing; and on a small machine that is busy
    with anything else, OpenMP threads spin-waiting for a core made the same code 10-100x
    slower (seconds per step instead of milliseconds).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def project_qkv(attn: MultiHeadAttention, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """q (B, T, H Dh), k and v (B, T, Hkv Dh) of x, each by its own matmul with its block of
    the packed projection (a reference for the packed self-attention matmul)."""
    blocks = zip(attn.qkv_weights(), attn.qkv_biases(), strict=True)
    return tuple(F.linear(x, weight, bias) for weight, bias in blocks)
