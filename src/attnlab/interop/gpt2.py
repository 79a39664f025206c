"""GPT-2 (transformers' GPT2LMHeadModel) <-> DecoderOnly: which knobs fit, config, weights.

GPT-2 is attnlab's DecoderOnly with its defaults: pre-LN, LayerNorm with biases, learned
positions, multi-head attention. Its Conv1D layers store a Linear's weight transposed, (in,
out), and c_attn packs q, k and v in our order.
"""

from __future__ import annotations

from typing import Any

from attnlab.interop.hf import fixed_mismatches, show
from attnlab.interop.mapping import TensorMap, rename
from attnlab.models.config import ModelConfig

# Our activation -> GPT-2's activation_function (gelu is exact in transformers' ACT2FN).
ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "gelu_tanh": "gelu_new"}
# transformers' names -> ours (gelu_new and gelu_pytorch_tanh are both the tanh form).
ACTIVATIONS_FROM_HF = {
    "relu": "relu",
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
}
# What GPT-2 fixes; everything else (widths, depth, eps, tying) is a config value.
FIXED = {"pos": "learned", "norm": "layernorm", "norm_first": True, "bias": True, "qk_norm": False}
REQUIREMENTS = "pos=learned, norm=layernorm, norm_first=true, bias=true, activation=" + "|".join(
    ACTIVATIONS
)


def mismatches(config: ModelConfig) -> list[str]:
    """The knobs of `config` GPT-2 cannot express, as `model.key=value`."""
    return fixed_mismatches(config, FIXED, ACTIVATIONS)


def hf_config(config: ModelConfig, vocab_size: int, n_layers: int, tied: bool) -> dict[str, Any]:
    """GPT2Config's arguments for a DecoderOnly of `config` (mismatches(config) empty)."""
    return dict(
        vocab_size=vocab_size,
        n_positions=config.max_len,
        n_embd=config.d_model,
        n_layer=n_layers,
        n_head=config.n_heads,
        n_inner=config.d_ff,
        activation_function=ACTIVATIONS[config.activation],
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        layer_norm_epsilon=config.layer_norm_eps,
        tie_word_embeddings=tied,
    )


def model_arguments(hf: Any) -> dict[str, Any]:
    """DecoderOnly's arguments (model.*) for a transformers GPT2Config; a setting attnlab
    cannot represent raises ValueError naming it."""
    refuse = {
        "activation_function": hf.activation_function not in ACTIVATIONS_FROM_HF,
        "scale_attn_weights": not hf.scale_attn_weights,
        "scale_attn_by_inverse_layer_idx": hf.scale_attn_by_inverse_layer_idx,
        "add_cross_attention": getattr(hf, "add_cross_attention", False),
    }
    for key, bad in refuse.items():
        if bad:
            raise ValueError(
                f"GPT-2 config {key}={show(getattr(hf, key))} has no attnlab equivalent"
            )
    return dict(
        d_model=hf.n_embd,
        n_heads=hf.n_head,
        n_layers=hf.n_layer,
        d_ff=hf.n_inner or 4 * hf.n_embd,
        n_kv_heads=None,
        activation=ACTIVATIONS_FROM_HF[hf.activation_function],
        layer_norm_eps=hf.layer_norm_epsilon,
        dropout=hf.resid_pdrop,
        max_len=hf.n_positions,
        tie_output=hf.tie_word_embeddings,
        **FIXED,
    )


def tensor_maps(n_layers: int, vocab_size: int, lm_head: bool = True) -> list[TensorMap]:
    """Our DecoderOnly's tensors and GPT2LMHeadModel's (lm_head: the LM head's too)."""
    maps = [
        TensorMap("tok_embed.embedding.weight", ("transformer.wte.weight",), vocab_rows=vocab_size),
        rename("pos.embedding.weight", "transformer.wpe.weight"),
        rename("norm.weight", "transformer.ln_f.weight"),
        rename("norm.bias", "transformer.ln_f.bias"),
    ]
    if lm_head:
        maps.append(TensorMap("lm_head.weight", ("lm_head.weight",), vocab_rows=vocab_size))
    for i in range(n_layers):
        ours, theirs = f"layers.{i}.", f"transformer.h.{i}."
        for a, b, transposed in (
            ("norm1", "ln_1", False),
            ("self_attn.qkv_proj", "attn.c_attn", True),  # [q | k | v], as ours
            ("self_attn.out_proj", "attn.c_proj", True),
            ("norm2", "ln_2", False),
            ("ffn.linear1", "mlp.c_fc", True),
            ("ffn.linear2", "mlp.c_proj", True),
        ):
            maps.append(rename(f"{ours}{a}.weight", f"{theirs}{b}.weight", transposed))
            maps.append(rename(f"{ours}{a}.bias", f"{theirs}{b}.bias"))
    return maps
