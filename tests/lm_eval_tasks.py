"""lm-eval tasks written by the tests: a multiple-choice task and a perplexity task over local
JSONL (lm-eval reads them through `datasets`' json loader: nothing downloads), and a tiny
causal LM with its export."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from attnlab.data.sources.toy_text import NOUNS, VERBS, toy_sentences
from attnlab.data.spec import DataSpec
from attnlab.data.tokenizers.line import LineTokenizer, train_bpe
from attnlab.interop.to_hf import plan_export, write_model
from attnlab.interop.tokenizer import hf_tokenizer
from attnlab.models import DecoderOnly

TASKS = ("toy_mc", "toy_ppl")
MC = ("acc", "acc_norm")
PPL = {  # metric -> its aggregation (lm-eval's defaults, said so as lm-eval's own tasks do)
    "word_perplexity": "weighted_perplexity",
    "byte_perplexity": "weighted_perplexity",
    "bits_per_byte": "bits_per_byte",
}
MAX_LEN = 32
LINES = toy_sentences(300, seed=0)


def _task(name: str, data: Path, fields: str) -> str:
    return (
        f"task: {name}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n  cache_dir: {data.parent / 'cache'}\n"
        "test_split: test\n"
        f"{fields}"
        "metadata:\n  version: 1.0\n"
    )


def write_tasks(folder: Path) -> Path:
    """toy_mc (which noun class a verb takes: acc, acc_norm) and toy_ppl (sentences:
    word/byte perplexity, bits per byte) in `folder`, as task YAML + JSONL."""
    folder.mkdir(parents=True, exist_ok=True)
    classes = list(NOUNS)
    questions = [
        {"question": f"the {noun} {verb} the", "answer": classes.index(kind)}
        for (verb, kind), noun in zip(VERBS.items(), NOUNS["animal"], strict=True)
    ]
    for row in questions:
        row["choices"] = [f" {NOUNS[k][1]}" for k in classes]
    mc, ppl = folder / "toy_mc.jsonl", folder / "toy_ppl.jsonl"
    mc.write_text("".join(json.dumps(row) + "\n" for row in questions))
    texts = [" ".join(LINES[i : i + 5]) for i in range(0, 50, 5)]  # some longer than max_len
    ppl.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    choice = (
        "output_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: "{{answer}}"\n'
        "metric_list:\n"
        + "".join(f"  - {{metric: {m}, aggregation: mean, higher_is_better: true}}\n" for m in MC)
    )
    rolling = (
        'output_type: loglikelihood_rolling\ndoc_to_text: ""\ndoc_to_target: "{{text}}"\n'
        "metric_list:\n"
        + "".join(
            f"  - {{metric: {m}, aggregation: {a}, higher_is_better: false}}\n"
            for m, a in PPL.items()
        )
    )
    (folder / "toy_mc.yaml").write_text(_task("toy_mc", mc, choice))
    (folder / "toy_ppl.yaml").write_text(_task("toy_ppl", ppl, rolling))
    return folder


KNOBS = {  # GPT2LMHeadModel; LlamaForCausalLM (grouped-query attention)
    "gpt2": dict(activation="gelu_tanh", d_ff=64),
    "llama": dict(pos="rope", norm="rmsnorm", activation="swiglu", d_ff=80, n_kv_heads=2),
}


def tiny_lm(folder: Path, knobs: dict[str, Any]) -> tuple[DecoderOnly, DataSpec, Path]:
    """A random GPT over byte-level BPE (every weight moved off its initial value), its spec,
    and its attnlab-export folder."""
    tokenizer = LineTokenizer(train_bpe(LINES, 300))
    spec = DataSpec(
        "causal_lm",
        tokenizer.vocab_size,
        tokenizer.decode,
        MAX_LEN,
        eos_id=tokenizer.eos_id,
        encode=tokenizer.encode,
    )
    network = DecoderOnly(tokenizer.vocab_size, 32, 4, 2, max_len=MAX_LEN, **knobs).eval()
    with torch.no_grad():
        for p in network.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out = write_model(plan_export(network, "causal_lm", tokenizer.eos_id), folder)
    exported = hf_tokenizer(SimpleNamespace(tokenizer=tokenizer, spec=spec))
    assert exported is not None
    exported.save(out, MAX_LEN)
    return network, spec, out
