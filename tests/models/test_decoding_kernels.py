"""Decoding runs attention without cuDNN's kernel, which plans anew for every key length."""

from __future__ import annotations

import torch

from attnlab.models import DecoderOnly, EncoderDecoder
from attnlab.models.attention import decoding_kernels
from attnlab.tasks.decoding import beam_search, greedy_decode


def record_cudnn_state(network: torch.nn.Module) -> list[bool]:
    """Whether SDPA may pick cuDNN, as seen by every attention call of `network`."""
    seen: list[bool] = []
    for module in network.modules():
        if type(module).__name__ == "MultiHeadAttention":
            module.register_forward_pre_hook(
                lambda *_: seen.append(torch.backends.cuda.cudnn_sdp_enabled())
            )
    return seen


def test_generation_and_seq2seq_decoding_leave_cudnn_attention_out() -> None:
    assert torch.backends.cuda.cudnn_sdp_enabled()  # training keeps every kernel
    gpt = DecoderOnly(50, d_model=16, n_heads=2, n_layers=2, max_len=32).eval()
    seen = record_cudnn_state(gpt)
    gpt.generate(torch.randint(50, (2, 3)), 4)
    assert seen and not any(seen)

    encdec = EncoderDecoder(50, d_model=16, n_heads=2, d_ff=32, max_len=32).eval()
    seen = record_cudnn_state(encdec)
    src = torch.randint(4, 50, (2, 5))
    mask = torch.zeros_like(src, dtype=torch.bool)
    for decode in (greedy_decode, beam_search):
        seen.clear()
        decode(encdec, src, mask, bos_id=1, eos_id=2, pad_id=0, max_len=6)
        assert seen and not any(seen)
    assert torch.backends.cuda.cudnn_sdp_enabled()  # restored afterwards


def test_decoding_kernels_change_no_output() -> None:
    torch.manual_seed(0)
    gpt = DecoderOnly(50, d_model=16, n_heads=2, n_layers=2, max_len=32).eval()
    idx = torch.randint(50, (3, 9))
    plain = gpt(idx)
    with decoding_kernels():
        torch.testing.assert_close(gpt(idx), plain)
