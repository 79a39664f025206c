"""DecoderOnly with GPT-2's settings reproduces Hugging Face's GPT2LMHeadModel."""

from __future__ import annotations

import pytest
import torch

from attnlab.models import DecoderOnly

transformers = pytest.importorskip("transformers")


@torch.no_grad()
def gpt2_state_dict(model: DecoderOnly) -> dict[str, torch.Tensor]:
    """Our weights under GPT-2's names and layout.

    GPT-2's Conv1D stores a Linear's weight transposed, (in, out), and packs the q, k, v
    projections into one c_attn matrix.
    """
    state = {
        "transformer.wte.weight": model.tok_embed.weight,
        "transformer.wpe.weight": model.pos.embedding.weight,
        "transformer.ln_f.weight": model.norm.weight,
        "transformer.ln_f.bias": model.norm.bias,
        "lm_head.weight": model.lm_head.weight,
    }
    for i, layer in enumerate(model.layers):
        attn, ffn, prefix = layer.self_attn, layer.ffn, f"transformer.h.{i}."
        state |= {
            prefix + "ln_1.weight": layer.norm1.weight,
            prefix + "ln_1.bias": layer.norm1.bias,
            prefix + "attn.c_attn.weight": attn.qkv_proj.weight.T,  # [q | k | v], as ours
            prefix + "attn.c_attn.bias": attn.qkv_proj.bias,
            prefix + "attn.c_proj.weight": attn.out_proj.weight.T,
            prefix + "attn.c_proj.bias": attn.out_proj.bias,
            prefix + "ln_2.weight": layer.norm2.weight,
            prefix + "ln_2.bias": layer.norm2.bias,
            prefix + "mlp.c_fc.weight": ffn.linear1.weight.T,
            prefix + "mlp.c_fc.bias": ffn.linear1.bias,
            prefix + "mlp.c_proj.weight": ffn.linear2.weight.T,
            prefix + "mlp.c_proj.bias": ffn.linear2.bias,
        }
    return state


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
