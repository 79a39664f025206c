"""End to end: a tiny EncoderDecoder can memorise a small copy task."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnlab.models import EncoderDecoder


def test_overfits_copy_task() -> None:
    V, BOS = 10, 0
    src = torch.randint(1, V, (16, 8))  # (B, S); token 0 is reserved for BOS
    tgt_in = torch.cat([torch.full((16, 1), BOS), src[:, :-1]], dim=1)  # shifted right
    model = EncoderDecoder(
        V, d_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=64, dropout=0.0
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    first_loss = None
    for _ in range(300):
        logits = model(src, tgt_in)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, V), src.reshape(-1))
        first_loss = first_loss if first_loss is not None else loss.item()
        if loss.item() < 0.01:
            break  # before another step, which may overshoot: check these weights below
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    assert first_loss > 1.5  # it really started from chance (ln 10 = 2.3)
    assert loss.item() < 0.01, f"copy task not learned: loss {loss.item():.4f}"
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(src, tgt_in).argmax(-1), src)
