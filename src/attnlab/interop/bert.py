"""BERT (transformers' BertForMaskedLM, BertForSequenceClassification, BertForPreTraining)
<-> EncoderOnly: which knobs fit, config, weights.

BertForPreTraining is a masked-LM EncoderOnly with next-sentence prediction (nsp=True): the
pooler and `nsp_head` score the sentence pair.

BERT is attnlab's EncoderOnly with its defaults: post-LN, LayerNorm with biases, learned
positions, segment embeddings, the pooler tanh(dense(h_[CLS])) for classification and the
masked-LM head dense -> activation -> LayerNorm -> decoder (tied to the token embedding).
"""

from __future__ import annotations

from typing import Any

from attnlab.interop.gpt2 import ACTIVATIONS, ACTIVATIONS_FROM_HF
from attnlab.interop.hf import fixed_mismatches, show
from attnlab.interop.mapping import TensorMap, rename
from attnlab.models.config import ModelConfig

FIXED = {"pos": "learned", "norm": "layernorm", "norm_first": False, "bias": True, "qk_norm": False}
REQUIREMENTS = "pos=learned, norm=layernorm, norm_first=false, bias=true, activation=" + "|".join(
    ACTIVATIONS
)


def mismatches(config: ModelConfig) -> list[str]:
    """The knobs of `config` BERT cannot express, as `model.key=value`."""
    return fixed_mismatches(config, FIXED, ACTIVATIONS)


def hf_config(
    config: ModelConfig,
    vocab_size: int,
    n_layers: int,
    tied: bool,
    type_vocab_size: int,
    pad_id: int | None,
    num_classes: int | None = None,
    classifier_dropout: float | None = None,
) -> dict[str, Any]:
    """BertConfig's arguments for an EncoderOnly of `config` (mismatches(config) empty).
    BERT always has segment embeddings: without ours, one row of zeros stands in."""
    arguments = dict(
        vocab_size=vocab_size,
        hidden_size=config.d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=config.n_heads,
        intermediate_size=config.d_ff,
        hidden_act=ACTIVATIONS[config.activation],
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout,
        max_position_embeddings=config.max_len,
        type_vocab_size=max(type_vocab_size, 1),
        layer_norm_eps=config.layer_norm_eps,
        pad_token_id=pad_id,
        tie_word_embeddings=tied,
    )
    if num_classes is not None:
        arguments |= dict(num_labels=num_classes, classifier_dropout=classifier_dropout)
    return arguments


def model_arguments(hf: Any) -> dict[str, Any]:
    """EncoderOnly's arguments (model.*) for a transformers BertConfig; a setting attnlab
    cannot represent raises ValueError naming it."""
    position = getattr(hf, "position_embedding_type", "absolute")
    refuse = {
        "hidden_act": (hf.hidden_act, hf.hidden_act not in ACTIVATIONS_FROM_HF),
        "position_embedding_type": (position, position != "absolute"),
        "is_decoder": (True, bool(getattr(hf, "is_decoder", False))),
    }
    for key, (value, bad) in refuse.items():
        if bad:
            raise ValueError(f"BERT config {key}={show(value)} has no attnlab equivalent")
    arguments = dict(
        d_model=hf.hidden_size,
        n_heads=hf.num_attention_heads,
        n_layers=hf.num_hidden_layers,
        d_ff=hf.intermediate_size,
        n_kv_heads=None,
        activation=ACTIVATIONS_FROM_HF[hf.hidden_act],
        layer_norm_eps=hf.layer_norm_eps,
        dropout=hf.hidden_dropout_prob,
        max_len=hf.max_position_embeddings,
        type_vocab_size=hf.type_vocab_size,
        pad_id=hf.pad_token_id,
        tie_output=hf.tie_word_embeddings,
        **FIXED,
    )
    if getattr(hf, "classifier_dropout", None) is not None:
        arguments["classifier_dropout"] = hf.classifier_dropout
    return arguments


def body_maps(
    n_layers: int, d_model: int, vocab_size: int, prefix: str = "bert."
) -> list[TensorMap]:
    """Embeddings and blocks (post-LN: no final norm) under BertModel's names."""
    e = prefix + "embeddings."
    maps = [
        TensorMap(
            "tok_embed.embedding.weight", (e + "word_embeddings.weight",), vocab_rows=vocab_size
        ),
        rename("pos.embedding.weight", e + "position_embeddings.weight"),
        rename("segment_embed.weight", e + "token_type_embeddings.weight"),
        rename("embed_norm.weight", e + "LayerNorm.weight"),
        rename("embed_norm.bias", e + "LayerNorm.bias"),
    ]
    for i in range(n_layers):
        ours, theirs = f"layers.{i}.", f"{prefix}encoder.layer.{i}."
        for kind in ("weight", "bias"):
            qkv = tuple(f"{theirs}attention.self.{p}.{kind}" for p in ("query", "key", "value"))
            maps.append(TensorMap(f"{ours}self_attn.qkv_proj.{kind}", qkv, rows=(d_model,) * 3))
            for a, b in (
                ("self_attn.out_proj", "attention.output.dense"),
                ("norm1", "attention.output.LayerNorm"),
                ("ffn.linear1", "intermediate.dense"),
                ("ffn.linear2", "output.dense"),
                ("norm2", "output.LayerNorm"),
            ):
                maps.append(rename(f"{ours}{a}.{kind}", f"{theirs}{b}.{kind}"))
    return maps


def pooler_maps(prefix: str = "bert.") -> list[TensorMap]:
    return [rename(f"pooler.dense.{k}", f"{prefix}pooler.dense.{k}") for k in ("weight", "bias")]


def mlm_head_maps(vocab_size: int) -> list[TensorMap]:
    """BertForMaskedLM's head (cls.predictions.bias is its decoder's bias, tied)."""
    p = "cls.predictions."
    maps = [
        rename("mlm_head.dense.weight", p + "transform.dense.weight"),
        rename("mlm_head.dense.bias", p + "transform.dense.bias"),
        rename("mlm_head.norm.weight", p + "transform.LayerNorm.weight"),
        rename("mlm_head.norm.bias", p + "transform.LayerNorm.bias"),
    ]
    for k in ("weight", "bias"):
        maps.append(
            TensorMap(f"mlm_head.decoder.{k}", (p + f"decoder.{k}",), vocab_rows=vocab_size)
        )
    return maps


def nsp_head_maps() -> list[TensorMap]:
    """BertForPreTraining's next-sentence head: its label 0 means "B follows A", ours 1, so
    the two rows swap."""
    return [
        TensorMap(f"nsp_head.{k}", (f"cls.seq_relationship.{k}",), flipped=True)
        for k in ("weight", "bias")
    ]


def classifier_maps() -> list[TensorMap]:
    return [rename(f"classifier.{k}", f"classifier.{k}") for k in ("weight", "bias")]
