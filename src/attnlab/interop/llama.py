"""Llama-style models (transformers' LlamaForCausalLM, and Qwen3ForCausalLM for QK-norm)
<-> DecoderOnly: which knobs fit, config, weights.

Llama is a DecoderOnly with pos=rope (the half-split channel pairs, as ours), norm=rmsnorm,
activation=swiglu, pre-LN, optionally grouped-query attention and biases. Our packed q/k/v
projection is its q_proj, k_proj and v_proj stacked by rows; our SwiGLU's gate, linear1 and
linear2 are its gate_proj, up_proj and down_proj. Qwen 3 is the same network with an RMSNorm
over each head's q and k (our qk_norm, whose eps is 1e-6: exact only when every norm's is).
"""

from __future__ import annotations

from typing import Any

from attnlab.interop.hf import show
from attnlab.interop.mapping import TensorMap, rename
from attnlab.models.config import ModelConfig
from attnlab.models.feedforward import swiglu_hidden_size

FIXED = {"pos": "rope", "norm": "rmsnorm", "norm_first": True, "activation": "swiglu"}
QK_NORM_EPS = 1e-6  # attention.MultiHeadAttention's q_norm / k_norm
ROPE_BASE = 10000.0  # rotary.RotaryEmbedding's default
REQUIREMENTS = (
    "pos=rope, norm=rmsnorm, norm_first=true, activation=swiglu (qk_norm=true as Qwen3: "
    f"bias=false, layer_norm_eps={QK_NORM_EPS})"
)


def mismatches(config: ModelConfig) -> list[str]:
    """The knobs of `config` Llama (or Qwen3, with qk_norm) cannot express."""
    wrong = [
        f"model.{k}={show(getattr(config, k))}" for k, v in FIXED.items() if getattr(config, k) != v
    ]
    if config.qk_norm and config.bias:
        wrong.append("model.bias=true (with qk_norm=true, as Qwen3)")
    if config.qk_norm and config.layer_norm_eps != QK_NORM_EPS:
        wrong.append(f"model.layer_norm_eps={show(config.layer_norm_eps)} (with qk_norm=true)")
    return wrong


def architecture(config: ModelConfig) -> str:
    return "Qwen3ForCausalLM" if config.qk_norm else "LlamaForCausalLM"


def hf_config(config: ModelConfig, vocab_size: int, n_layers: int, tied: bool) -> dict[str, Any]:
    """LlamaConfig's (or Qwen3Config's) arguments for a DecoderOnly of `config`."""
    arguments = dict(
        vocab_size=vocab_size,
        hidden_size=config.d_model,
        intermediate_size=swiglu_hidden_size(config.d_ff),
        num_hidden_layers=n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_kv_heads or config.n_heads,
        head_dim=config.d_head,
        hidden_act="silu",
        max_position_embeddings=config.max_len,
        rms_norm_eps=config.layer_norm_eps,
        tie_word_embeddings=tied,
        attention_bias=config.bias,
        attention_dropout=config.dropout,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_BASE},
    )
    if not config.qk_norm:
        arguments["mlp_bias"] = config.bias
    return arguments


def d_ff_for(intermediate_size: int) -> int | None:
    """Our d_ff whose SwiGLU hidden size (2/3 of it, rounded) is `intermediate_size`."""
    guess = round(1.5 * intermediate_size)
    return next(
        (d for d in (guess - 1, guess, guess + 1) if swiglu_hidden_size(d) == intermediate_size),
        None,
    )


def model_arguments(hf: Any) -> dict[str, Any]:
    """DecoderOnly's arguments (model.*) for a transformers LlamaConfig or Qwen3Config; a
    setting attnlab cannot represent raises ValueError naming it."""
    qk_norm = hf.model_type == "qwen3"
    rope = getattr(hf, "rope_parameters", None) or {}
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    attention_bias = bool(getattr(hf, "attention_bias", False))
    mlp_bias = bool(getattr(hf, "mlp_bias", False))
    refuse = {
        "hidden_act": (hf.hidden_act, hf.hidden_act != "silu"),
        "rope_parameters.rope_type": (
            rope.get("rope_type"),
            rope.get("rope_type", "default") != "default",
        ),
        "rope_parameters.rope_theta": (
            rope.get("rope_theta"),
            rope.get("rope_theta", ROPE_BASE) != ROPE_BASE,
        ),
        "head_dim": (head_dim, head_dim * hf.num_attention_heads != hf.hidden_size),
        "mlp_bias": (mlp_bias, not qk_norm and mlp_bias != attention_bias),
        "use_sliding_window": (True, bool(getattr(hf, "use_sliding_window", False))),
        "rms_norm_eps": (hf.rms_norm_eps, qk_norm and hf.rms_norm_eps != QK_NORM_EPS),
        "pretraining_tp": (getattr(hf, "pretraining_tp", 1), getattr(hf, "pretraining_tp", 1) != 1),
    }
    for key, (value, bad) in refuse.items():
        if bad:
            raise ValueError(
                f"{hf.model_type} config {key}={show(value)} has no attnlab equivalent "
                f"(attnlab: silu gating, RoPE base {ROPE_BASE:g}, head_dim = hidden/heads, one "
                "bias setting for all linears, no sliding window, QK-norm eps 1e-6)"
            )
    d_ff = d_ff_for(hf.intermediate_size)
    if d_ff is None:
        raise ValueError(
            f"{hf.model_type} config intermediate_size={hf.intermediate_size} is no SwiGLU "
            "hidden size of attnlab (round(2 d_ff / 3))"
        )
    return dict(
        d_model=hf.hidden_size,
        n_heads=hf.num_attention_heads,
        n_layers=hf.num_hidden_layers,
        d_ff=d_ff,
        n_kv_heads=hf.num_key_value_heads,
        layer_norm_eps=hf.rms_norm_eps,
        bias=attention_bias,
        qk_norm=qk_norm,
        dropout=float(getattr(hf, "attention_dropout", 0.0)),
        max_len=hf.max_position_embeddings,
        tie_output=hf.tie_word_embeddings,
        **FIXED,
    )


def tensor_maps(
    config: ModelConfig, n_layers: int, vocab_size: int, lm_head: bool = True
) -> list[TensorMap]:
    """Our DecoderOnly's tensors and LlamaForCausalLM's / Qwen3ForCausalLM's."""
    maps = [
        TensorMap(
            "tok_embed.embedding.weight", ("model.embed_tokens.weight",), vocab_rows=vocab_size
        ),
        rename("norm.weight", "model.norm.weight"),
    ]
    if lm_head:
        maps.append(TensorMap("lm_head.weight", ("lm_head.weight",), vocab_rows=vocab_size))
    kv = (config.n_kv_heads or config.n_heads) * config.d_head
    rows = (config.d_model, kv, kv)
    kinds = ("weight", "bias") if config.bias else ("weight",)
    for i in range(n_layers):
        ours, theirs = f"layers.{i}.", f"model.layers.{i}."
        maps.append(rename(f"{ours}norm1.weight", f"{theirs}input_layernorm.weight"))
        maps.append(rename(f"{ours}norm2.weight", f"{theirs}post_attention_layernorm.weight"))
        for kind in kinds:
            qkv = tuple(f"{theirs}self_attn.{p}_proj.{kind}" for p in "qkv")
            maps.append(TensorMap(f"{ours}self_attn.qkv_proj.{kind}", qkv, rows=rows))
            for a, b in (
                ("self_attn.out_proj", "self_attn.o_proj"),
                ("ffn.gate", "mlp.gate_proj"),
                ("ffn.linear1", "mlp.up_proj"),
                ("ffn.linear2", "mlp.down_proj"),
            ):
                maps.append(rename(f"{ours}{a}.{kind}", f"{theirs}{b}.{kind}"))
        if config.qk_norm:
            maps.append(
                rename(f"{ours}self_attn.q_norm.weight", f"{theirs}self_attn.q_norm.weight")
            )
            maps.append(
                rename(f"{ours}self_attn.k_norm.weight", f"{theirs}self_attn.k_norm.weight")
            )
    return maps
