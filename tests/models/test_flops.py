"""FLOPs-per-token estimates against torch's own FLOP counter on a real forward + backward."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from attnlab.models import DecoderOnly, EncoderDecoder, EncoderOnly

B, T, V = 2, 32, 50


def counted_flops_per_token(run, tokens: int) -> float:
    with FlopCounterMode(display=False) as counter:
        run().float().pow(2).mean().backward()
    return counter.get_total_flops() / tokens


def test_decoder_only_estimate_matches_counted_flops() -> None:
    model = DecoderOnly(V, 64, 4, 3, max_len=T)
    idx = torch.randint(V, (B, T))
    counted = counted_flops_per_token(lambda: model(idx), B * T)
    assert model.flops_per_token(T) == pytest.approx(counted, rel=0.1)


def test_encoder_only_estimate_matches_counted_flops() -> None:
    model = EncoderOnly(V, 64, 4, 3, max_len=T)
    idx = torch.randint(V, (B, T))
    # The encoder alone: the estimate leaves the heads out.
    counted = counted_flops_per_token(lambda: model.encode(idx), B * T)
    assert model.flops_per_token(T) == pytest.approx(counted, rel=0.1)


def test_encoder_decoder_estimate_matches_counted_flops() -> None:
    model = EncoderDecoder(V, 64, 4, 2, 3, 256, max_len=T)
    src, tgt = torch.randint(V, (B, T)), torch.randint(V, (B, T))
    counted = counted_flops_per_token(lambda: model(src, tgt), 2 * B * T)  # source + target
    assert model.flops_per_token(T) == pytest.approx(counted, rel=0.1)
