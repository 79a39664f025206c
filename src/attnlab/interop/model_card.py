"""What attnlab-export writes beside the weights: README.md, a Hugging Face model card (what
was trained, on what, by which command, with which results and versions), and, for a causal
LM, generation_config.json (its special tokens and attnlab-generate's sampling defaults).

The facts come from the run folder (run/export.py reads them: the checkpoint's config, its
metrics.json, .hydra/overrides.yaml); what a folder lacks is said to be unknown, not guessed.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

PIPELINES = {  # transformers architecture -> the Hub's pipeline tag
    "GPT2LMHeadModel": "text-generation",
    "LlamaForCausalLM": "text-generation",
    "Qwen3ForCausalLM": "text-generation",
    "BertForMaskedLM": "fill-mask",
    "BertForPreTraining": "fill-mask",
    "BertForSequenceClassification": "text-classification",
}
AUTO_CLASSES = {"text-generation": "AutoModelForCausalLM", "fill-mask": "AutoModelForMaskedLM"}
# attnlab-generate's defaults (conf/generate.yaml): the export samples as attnlab does.
SAMPLING = {"do_sample": True, "temperature": 0.8, "top_k": 200}
KNOBS = (
    "d_model", "n_heads", "n_kv_heads", "n_layers", "d_ff", "pos", "norm", "norm_first",
    "activation", "qk_norm", "bias", "tie_output", "dropout", "max_len", "parametrization",
)  # fmt: skip
UNKNOWN = "not recorded"
STAGES = ("val", "test", "lm_eval")  # the metrics a card lists


@dataclass
class RunFacts:
    """A trained run as its folder describes it."""

    checkpoint: str
    model: dict[str, Any]  # the run's model config (model.*)
    data: dict[str, Any]  # the run's data config (data.*)
    choices: dict[str, Any] = field(default_factory=dict)  # model=, data=, ... of the run
    command: list[str] | None = None  # attnlab-train's overrides (None: not recorded)
    summary: dict[str, Any] = field(default_factory=dict)  # the run's metrics.json
    versions: dict[str, str] = field(default_factory=dict)  # attnlab, torch, transformers
    license: str = "other"


def _cell(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (bool, type(None))) else str(value)


def _rows(pairs: list[tuple[str, Any]]) -> list[str]:
    return ["| | |", "| --- | --- |", *(f"| {k} | {_cell(v)} |" for k, v in pairs)]


def _data_lines(facts: RunFacts) -> list[str]:
    data = facts.data
    source = data.get("source") if isinstance(data.get("source"), dict) else {}
    pairs = [("data option", facts.choices.get("data") or UNKNOWN)]
    pairs.append(("datamodule", data.get("_target_", UNKNOWN)))
    tokenizer = data.get("tokenizer") or source.get("tokenizer")
    for key, value in (("tokenizer", tokenizer), ("block size", data.get("block_size"))):
        if value is not None:
            pairs.append((key, value))
    seen = facts.summary.get("tokens_seen")
    pairs.append(("tokens seen", f"{seen:,}" if isinstance(seen, int) else UNKNOWN))
    pairs.append(("optimiser steps", facts.summary.get("global_step", UNKNOWN)))
    pairs.append(("training wall time (s)", facts.summary.get("wall_time_s", UNKNOWN)))
    return _rows(pairs)


def _metric_lines(facts: RunFacts) -> list[str]:
    metrics = {
        name: value
        for name, value in (facts.summary.get("metrics") or {}).items()
        if name.split("/")[0] in STAGES
    }
    if not metrics:
        return [f"Final metrics: {UNKNOWN} (no metrics.json beside the checkpoint's folder)."]
    lines = [
        "Final metrics (the run's metrics.json: validation at its end, test of the best "
        "checkpoint, lm-eval tasks if evaluated):",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    lines += [f"| `{name}` | {value:.6g} |" for name, value in sorted(metrics.items())]
    return lines


def model_card(architecture: str, facts: RunFacts, name: str, tokenizer: bool) -> str:
    """README.md of an exported folder `name`: Hub metadata, then the run, its data, its
    results, how to load it (`tokenizer`: whether the folder has one)."""
    pipeline = PIPELINES.get(architecture, "")
    params = facts.summary.get("parameters") or {}
    front = ["---", "library_name: transformers", f"license: {facts.license}"]
    front += [f"pipeline_tag: {pipeline}"] if pipeline else []
    front += ["tags:", "- attnlab", f"- {facts.choices.get('model') or 'attnlab-model'}", "---"]
    if facts.command is None:
        command = f"{UNKNOWN} (no .hydra/overrides.yaml: a run started from Python?)"
    else:
        command = "`" + shlex.join(["attnlab-train", *facts.command]) + "`"
    lines = [*front, "", f"# {name}", ""]
    lines += [
        f"A {architecture} exported by `attnlab-export` from the attnlab checkpoint "
        f"`{facts.checkpoint}`. Trained by: {command}. The run's whole config is in "
        "`attnlab_config.yaml`.",
        "",
        "## Model",
        "",
        *_rows(
            [
                ("architecture", architecture),
                ("attnlab network", facts.model.get("_target_", UNKNOWN)),
                ("parameters", params.get("total", UNKNOWN)),
                ("parameters (non-embedding)", params.get("non_embedding", UNKNOWN)),
                *((f"model.{k}", facts.model[k]) for k in KNOBS if k in facts.model),
            ]
        ),
        "",
        "## Data",
        "",
        *_data_lines(facts),
        "",
        "## Results",
        "",
        *_metric_lines(facts),
        "",
        "## Use",
        "",
    ]
    auto = AUTO_CLASSES.get(pipeline, "AutoModelForSequenceClassification")
    lines += ["```python", f"from transformers import AutoTokenizer, {auto}", ""]
    lines += [f'model = {auto}.from_pretrained("{name}")']
    if tokenizer:
        lines += [f'tokenizer = AutoTokenizer.from_pretrained("{name}")', "```", ""]
    else:
        lines += ["```", "", "No tokenizer: the run's data are token ids without text.", ""]
    lines += ["## Versions", "", *_rows(sorted(facts.versions.items()))]
    return "\n".join(lines) + "\n"


def generation_config(plan_config: dict[str, Any]) -> dict[str, Any]:
    """GenerationConfig's arguments for an exported causal LM: its special tokens (no pad
    token: the end-of-text token stands in), generation up to its context length (it has no
    positions beyond; attnlab-generate slides its window instead), attnlab's sampling."""
    eos = plan_config.get("eos_token_id")
    ids = {"bos_token_id": plan_config.get("bos_token_id"), "eos_token_id": eos}
    ids["pad_token_id"] = eos
    length = plan_config.get("n_positions") or plan_config.get("max_position_embeddings")
    return {**{k: v for k, v in ids.items() if v is not None}, "max_length": length, **SAMPLING}
