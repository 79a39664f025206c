"""DecoderOnly with GPT-2's settings reproduces Hugging Face's GPT2LMHeadModel."""

from __future__ import annotations

import pytest
import torch

from attnlab.interop import gpt2
from attnlab.interop.mapping import to_theirs
from attnlab.models import DecoderOnly

transformers = pytest.importorskip("transformers")


def gpt2_state_dict(model: DecoderOnly) -> dict[str, torch.Tensor]:
    """Our weights under GPT-2's names and layout (attnlab.interop.gpt2's map)."""
    return to_theirs(gpt2.tensor_maps(len(model.layers), model.vocab_size), model.state_dict())


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_logits_match_gpt2(tie: bool) -> None:
    V, D, H, L, T_max = 37, 32, 4, 2, 24
    ours = DecoderOnly(V, D, H, L, max_len=T_max, tie_output=tie).eval()
    with torch.no_grad():  # move LayerNorms and biases off their 1/0 init so they matter
        for p in ours.parameters():
            p.add_(0.05 * torch.randn_like(p))

    config = transformers.GPT2Config(
        vocab_size=V,
        n_positions=T_max,
        n_embd=D,
        n_layer=L,
        n_head=H,
        activation_function="gelu",  # exact GELU, like ours (GPT-2 itself uses the tanh one)
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=tie,
        bos_token_id=0,
        eos_token_id=0,
    )
    ref = transformers.GPT2LMHeadModel(config).eval()
    ref.load_state_dict(gpt2_state_dict(ours))  # strict: every GPT-2 weight is set
    assert (ref.lm_head.weight is ref.transformer.wte.weight) == tie

    idx = torch.randint(V, (3, T_max))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), ref(idx).logits, atol=1e-4, rtol=1e-4)

        # Greedy decoding through our KV cache picks the same tokens as theirs.
        prompt = idx[:, :20]
        reference = ref.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),  # else it guesses padding from pad_token_id
            max_new_tokens=4,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=None,
        )
    assert torch.equal(ours.generate(prompt, 4, temperature=0.0), reference)
