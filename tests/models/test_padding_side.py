"""Right padding under causal self-attention: the key-padding mask is dropped, outputs at real
positions do not change, and SDPA is called with is_causal and no mask (fused kernels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from attnlab.models import DecoderOnly, EncoderDecoder
from attnlab.models.attention import causal_padding_mask

CONF = Path(__file__).parents[2] / "conf" / "model"


def right_padded(batch: int, width: int, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids (B, T) with random lengths (one row full), mask True at the padding."""
    lengths = torch.randint(1, width + 1, (batch,))
    lengths[torch.randint(batch, ())] = width
    mask = torch.arange(width)[None, :] >= lengths[:, None]
    return torch.randint(1, vocab, (batch, width)).masked_fill(mask, 0), mask


def record_sdpa(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    sdpa = F.scaled_dot_product_attention

    def recording(q, k, v, attn_mask=None, is_causal=False, **kwargs):
        calls.append({"attn_mask": attn_mask, "is_causal": is_causal})
        return sdpa(q, k, v, attn_mask=attn_mask, is_causal=is_causal, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    return calls


def twins(cls: type, **kwargs: Any) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same network (same weights) with padding_side "right" and "any"."""
    right = cls(padding_side="right", **kwargs).eval()
    anywhere = cls(padding_side="any", **kwargs).eval()
    anywhere.load_state_dict(right.state_dict())
    return right, anywhere


@pytest.mark.parametrize("pos", ["learned", "rope", "alibi"])
@pytest.mark.parametrize("n_kv_heads", [None, 2])
def test_decoder_only_right_padding_changes_nothing_at_real_positions(
    pos: str, n_kv_heads: int | None
) -> None:
    small = dict(d_model=32, n_heads=4, n_layers=2, max_len=16, pos=pos, n_kv_heads=n_kv_heads)
    right, anywhere = twins(DecoderOnly, vocab_size=30, **small)
    ids, mask = right_padded(5, 12, 30)
    real = ~mask
    torch.testing.assert_close(right(ids, mask)[real], anywhere(ids, mask)[real])
    # Classification pools real positions only: the logits agree as a whole.
    right_clf, any_clf = twins(DecoderOnly, vocab_size=30, num_classes=3, **small)
    for pooling in ("last", "mean"):
        right_clf.pooler.kind = any_clf.pooler.kind = pooling
        torch.testing.assert_close(right_clf.classify(ids, mask), any_clf.classify(ids, mask))


def test_encoder_decoder_right_padded_targets_change_nothing_at_real_positions() -> None:
    small = dict(d_model=32, n_heads=4, n_encoder_layers=1, n_decoder_layers=2, d_ff=64)
    right, anywhere = twins(EncoderDecoder, vocab_size=30, dropout=0.0, **small)
    src, src_mask = right_padded(4, 9, 30)
    tgt, tgt_mask = right_padded(4, 7, 30)
    memory = right.encode(src, src_mask)
    got = right.decode(tgt, memory, src_mask, tgt_mask)
    expected = anywhere.decode(tgt, memory, src_mask, tgt_mask)
    torch.testing.assert_close(got[~tgt_mask], expected[~tgt_mask])


def test_right_padded_causal_attention_calls_sdpa_without_a_mask(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = record_sdpa(monkeypatch)
    small = dict(d_model=32, n_heads=4, n_layers=3, max_len=16)
    ids, mask = right_padded(3, 10, 30)
    for kind in ("right", "any"):
        calls.clear()
        DecoderOnly(30, padding_side=kind, **small)(ids, mask)
        assert len(calls) == 3
        if kind == "right":
            assert all(c["attn_mask"] is None and c["is_causal"] for c in calls)
        else:  # the mask is applied, so SDPA cannot use a fused causal kernel
            assert all(c["attn_mask"] is not None and not c["is_causal"] for c in calls)

    calls.clear()
    model = EncoderDecoder(30, 32, 4, 1, 2, 64, padding_side="right")
    src, src_mask = right_padded(3, 8, 30)
    model(src, ids, src_mask, mask)
    causal = [c for c in calls if c["is_causal"]]
    assert len(causal) == 2  # the decoder's self-attention, mask-free
    assert all(c["attn_mask"] is None for c in causal)
    # The encoder and cross-attention still mask the padded source.
    assert sum(c["attn_mask"] is not None for c in calls) == 1 + 2


def test_cached_steps_keep_the_mask() -> None:
    mask = torch.zeros(2, 5, dtype=torch.bool)
    assert causal_padding_mask(mask, "right") is None
    assert causal_padding_mask(mask, "right", cached=3) is mask  # covers the cached keys
    assert causal_padding_mask(mask, "any") is mask


def test_padding_side_is_validated() -> None:
    with pytest.raises(ValueError, match=r"^model\.padding_side='left' is not valid: choose"):
        DecoderOnly(30, padding_side="left")
    with pytest.raises(ValueError, match=r"^model\.padding_side='up' is not valid: choose"):
        EncoderDecoder(30, padding_side="up")


@pytest.mark.parametrize("name", ["gpt", "encdec"])
def test_model_configs_declare_right_padding(name: str) -> None:
    """attnlab's batches pad on the right (data/loading/padding.py, the seq2seq collate)."""
    assert OmegaConf.load(CONF / f"{name}.yaml").padding_side == "right"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the flash kernel needs a CUDA GPU")
def test_right_padded_batches_run_on_the_flash_kernel() -> None:
    """With only the flash backend allowed, a right-padded bf16 batch runs (flash takes no
    mask); the same batch with padding_side="any" needs a mask, which flash refuses."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    small = dict(d_model=128, n_heads=2, n_layers=2, max_len=64, pos="rope")
    right, anywhere = (m.cuda().bfloat16() for m in twins(DecoderOnly, vocab_size=30, **small))
    ids, mask = right_padded(4, 64, 30)
    ids, mask = ids.cuda(), mask.cuda()
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        logits = right(ids, mask)
        assert torch.isfinite(logits[~mask]).all()
        with pytest.raises(RuntimeError):
            anywhere(ids, mask)
    expected = anywhere(ids, mask)  # any kernel
    torch.testing.assert_close(logits[~mask], expected[~mask], atol=0.1, rtol=0.05)
