"""attnlab-export: a network written as a Hugging Face model directory that transformers'
Auto classes load with attnlab's logits (fp32, 1e-5), for every exportable knob combination;
a knob no Hugging Face model has is refused before anything is written."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch

from attnlab.interop.to_hf import plan_export, write_model
from attnlab.models import DecoderOnly, EncoderDecoder, EncoderOnly
from attnlab.run.validation import ConfigError
from tests.interop.conftest import T_MAX, D, H, L, V, padded_batch, perturb, transformers

TOL = dict(atol=1e-5, rtol=1e-5)


def gpt(**knobs: Any) -> DecoderOnly:
    return perturb(DecoderOnly(V, D, H, L, max_len=T_MAX, **knobs))


def bert_network(**knobs: Any) -> EncoderOnly:
    return perturb(EncoderOnly(V, D, H, L, max_len=T_MAX, dropout=0.0, **knobs))


# GPT-2: activations x tying x a padded vocabulary (tables wider than the real vocabulary).
GPT2_CASES = [
    dict(activation=a, tie_output=t, vocab_pad_multiple=p, d_ff=48)
    for a, t, p in itertools.product(("gelu", "gelu_tanh", "relu"), (True, False), (1, 8))
]
LLAMA = dict(pos="rope", norm="rmsnorm", activation="swiglu", d_ff=80)
# Llama: grouped-query attention x biases x tying; Qwen3 (QK-norm) with and without GQA.
LLAMA_CASES = (
    [
        LLAMA | dict(n_kv_heads=k, bias=b, tie_output=t)
        for k, b, t in itertools.product((None, 2, 1), (False, True), (True, False))
    ]
    + [
        LLAMA | dict(qk_norm=True, bias=False, layer_norm_eps=1e-6, n_kv_heads=k, tie_output=t)
        for k, t in itertools.product((None, 2), (True, False))
    ]
    + [LLAMA | dict(n_kv_heads=2, vocab_pad_multiple=8)]
)  # padded tables
# Masked LM, as BertForMaskedLM, or with next-sentence prediction as BertForPreTraining.
BERT_MLM_CASES = [
    dict(activation=a, type_vocab_size=s, tie_output=t, nsp=n)
    for a, s, t, n in itertools.product(
        ("gelu", "gelu_tanh", "relu"), (0, 2), (True, False), (False, True)
    )
] + [dict(activation="gelu", type_vocab_size=2, tie_output=True, nsp=True, vocab_pad_multiple=8)]
BERT_CLASSIFIER_CASES = [
    dict(activation=a, type_vocab_size=s, num_classes=3)
    for a, s in itertools.product(("gelu", "gelu_tanh"), (0, 2))
]
# The default suite runs these; the slow suite runs every case.
REPRESENTATIVE = {
    "gpt2": [GPT2_CASES[7]],
    "llama": [LLAMA_CASES[7], LLAMA_CASES[-2]],  # GQA with biases, untied; Qwen3
    "bert_mlm": [BERT_MLM_CASES[13]],  # tanh GELU, segments, tied, NSP
    "bert_cls": [BERT_CLASSIFIER_CASES[3]],
}


def cases(name: str, every: list[dict[str, Any]]) -> list[Any]:
    """Every case, the representative ones in the default suite and the rest marked slow."""
    ids = ["-".join(f"{k}={v}" for k, v in case.items()) for case in every]
    return [
        pytest.param(case, id=i, marks=() if case in REPRESENTATIVE[name] else pytest.mark.slow)
        for case, i in zip(every, ids, strict=True)
    ]


def causal_lm_round_trip(network: DecoderOnly, out: Path, architecture: str) -> None:
    plan = plan_export(network, "causal_lm")
    assert plan.architecture == architecture
    ref = transformers.AutoModelForCausalLM.from_pretrained(write_model(plan, out)).eval()
    assert type(ref).__name__ == architecture
    ids = torch.randint(V, (3, T_MAX))
    with torch.no_grad():
        torch.testing.assert_close(ref(ids).logits, network(ids), **TOL)
    tied = network.lm_head.weight is network.tok_embed.weight
    assert (ref.lm_head.weight.data_ptr() == ref.get_input_embeddings().weight.data_ptr()) == tied


@pytest.mark.parametrize("knobs", cases("gpt2", GPT2_CASES))
def test_gpt_exports_as_gpt2(tmp_path: Path, knobs: dict[str, Any]) -> None:
    causal_lm_round_trip(gpt(**knobs), tmp_path, "GPT2LMHeadModel")


@pytest.mark.parametrize("knobs", cases("llama", LLAMA_CASES))
def test_gpt_exports_as_llama(tmp_path: Path, knobs: dict[str, Any]) -> None:
    architecture = "Qwen3ForCausalLM" if knobs.get("qk_norm") else "LlamaForCausalLM"
    causal_lm_round_trip(gpt(**knobs), tmp_path, architecture)


@pytest.mark.parametrize("knobs", cases("bert_mlm", BERT_MLM_CASES))
def test_bert_exports_as_bert_for_masked_lm_or_pretraining(
    tmp_path: Path, knobs: dict[str, Any]
) -> None:
    network = bert_network(**knobs)
    plan = plan_export(network, "masked_lm")
    nsp = knobs["nsp"]
    assert plan.architecture == ("BertForPreTraining" if nsp else "BertForMaskedLM")
    auto = transformers.AutoModelForPreTraining if nsp else transformers.AutoModelForMaskedLM
    ref = auto.from_pretrained(write_model(plan, tmp_path)).eval()
    assert type(ref).__name__ == plan.architecture
    ids, pad = padded_batch()
    segments = (
        (torch.arange(T_MAX) >= 10).long().expand(3, -1) if knobs["type_vocab_size"] else None
    )
    with torch.no_grad():
        out = ref(ids, attention_mask=(~pad).long(), token_type_ids=segments)
        hidden = network.encode(ids, pad, segments)
        expected = out.prediction_logits if nsp else out.logits
        torch.testing.assert_close(network.mlm_logits(hidden), expected, **TOL)
        if nsp:  # our label 1 ("B follows A") is their 0
            nsp_logits = network.nsp_logits(hidden, pad).flip(-1)
            torch.testing.assert_close(nsp_logits, out.seq_relationship_logits, **TOL)


@pytest.mark.parametrize("knobs", cases("bert_cls", BERT_CLASSIFIER_CASES))
def test_bert_classifier_exports_as_bert_for_sequence_classification(
    tmp_path: Path, knobs: dict[str, Any]
) -> None:
    network = bert_network(pooling="cls", **knobs)
    plan = plan_export(network, "classification")
    auto = transformers.AutoModelForSequenceClassification
    ref = auto.from_pretrained(write_model(plan, tmp_path)).eval()
    assert type(ref).__name__ == "BertForSequenceClassification"
    ids, pad = padded_batch()
    with torch.no_grad():
        expected = ref(ids, attention_mask=(~pad).long()).logits
        torch.testing.assert_close(network.classify(ids, pad), expected, **TOL)


@pytest.mark.parametrize(
    ("network", "task", "named"),
    [
        (lambda: gpt(pos="alibi"), "causal_lm", "model.pos=alibi"),
        (lambda: gpt(norm_first=False), "causal_lm", "model.norm_first=false"),
        (lambda: gpt(norm="rmsnorm"), "causal_lm", "model.norm=rmsnorm"),
        (lambda: gpt(pos="rope", norm="rmsnorm", activation="gelu"), "causal_lm", "activation"),
        (lambda: gpt(**LLAMA, qk_norm=True), "causal_lm", "model.bias=true"),
        (lambda: gpt(num_classes=2), "classification", "causal_lm"),
        (lambda: bert_network(pos="sinusoidal"), "masked_lm", "model.pos=sinusoidal"),
        (lambda: bert_network(norm_first=True), "masked_lm", "model.norm_first=true"),
        (lambda: bert_network(num_classes=2, pooling="mean"), "classification", "pooling=mean"),
        (lambda: EncoderDecoder(V, d_model=D, n_heads=H), "seq2seq", "no model with the same"),
        (lambda: gpt(attn_window=4), "causal_lm", "model.attn_window=4"),
        (lambda: gpt(**LLAMA, attn_softcap=30.0), "causal_lm", "model.attn_softcap=30.0"),
        (lambda: bert_network(attn_window=3), "masked_lm", "model.attn_window=3"),
    ],
    ids=[
        "alibi",
        "post_ln_gpt",
        "rmsnorm_learned",
        "rope_gelu",
        "qk_norm_bias",
        "gpt_classifier",
        "sinusoidal_bert",
        "pre_ln_bert",
        "mean_pooling",
        "encdec",
        "gpt_window",
        "llama_softcap",
        "bert_window",
    ],
)
def test_a_knob_without_equivalent_is_refused_naming_it(network, task, named) -> None:
    with pytest.raises(ConfigError, match="cannot be exported") as error:
        plan_export(network(), task)
    assert named in str(error.value) and "\n" not in str(error.value)
