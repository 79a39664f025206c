"""A checkpoint as a Hugging Face model directory (`attnlab-export`: attnlab/run/export.py).

    attnlab-export ckpt_path=<run>/checkpoints/best.ckpt out=exported/
    python -c "from transformers import AutoModelForCausalLM as A; A.from_pretrained('exported')"

GPT becomes GPT2LMHeadModel when its knobs are GPT-2's, else LlamaForCausalLM (RoPE, RMSNorm,
SwiGLU, GQA, no biases; Qwen3ForCausalLM with qk_norm); BERT becomes BertForMaskedLM or
BertForSequenceClassification or BertForPreTraining (with next-sentence prediction) by the
checkpoint's task. A knob no target expresses (ALiBi, a
post-LN GPT, ...) is refused before anything is written. docs/interop.md has the whole table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from attnlab.interop import bert, gpt2, llama
from attnlab.interop.hf import attention_mismatches, transformers_module
from attnlab.interop.mapping import to_theirs
from attnlab.interop.model_card import PIPELINES, RunFacts, generation_config, model_card
from attnlab.interop.tokenizer import HFTokenizer, hf_tokenizer
from attnlab.models.decoder_only import DecoderOnly
from attnlab.models.encoder_only import EncoderOnly
from attnlab.utils.errors import ConfigError

if TYPE_CHECKING:
    from lightning.pytorch import LightningDataModule

    from attnlab.module import AttnLabModule


@dataclass
class ExportPlan:
    """What to write: a transformers model class, its config's arguments, its weights."""

    architecture: str
    config_class: str
    config: dict[str, Any]
    state: dict[str, torch.Tensor] = field(repr=False)


def _refuse(network: torch.nn.Module, wrong: list[str], targets: str) -> ConfigError:
    return ConfigError(
        f"{' '.join(wrong)} cannot be exported: no Hugging Face model has it; exportable "
        f"{type(network).__name__}s are {targets}"
    )


def plan_decoder_only(network: DecoderOnly, task: str, eos_id: int | None) -> ExportPlan:
    if task != "causal_lm" or network.lm_head is None:
        raise ConfigError(
            f"a DecoderOnly trained on task {task!r} cannot be exported: only causal_lm "
            "language models (GPT2LMHeadModel, LlamaForCausalLM)"
        )
    config, vocab, layers = network.config, network.vocab_size, len(network.layers)
    tied = network.lm_head.weight is network.tok_embed.weight
    if attention_mismatches(config):
        targets = f"GPT-2 ({gpt2.REQUIREMENTS}) or Llama ({llama.REQUIREMENTS})"
        raise _refuse(network, attention_mismatches(config), targets)
    ids = {"bos_token_id": eos_id, "eos_token_id": eos_id, "pad_token_id": None}
    state = network.state_dict()
    if not gpt2.mismatches(config):
        arguments = gpt2.hf_config(config, vocab, layers, tied) | ids
        return ExportPlan(
            "GPT2LMHeadModel",
            "GPT2Config",
            arguments,
            to_theirs(gpt2.tensor_maps(layers, vocab), state),
        )
    if not llama.mismatches(config):
        arguments = llama.hf_config(config, vocab, layers, tied) | ids
        architecture = llama.architecture(config)
        maps = llama.tensor_maps(config, layers, vocab)
        config_class = architecture.replace("ForCausalLM", "Config")
        return ExportPlan(architecture, config_class, arguments, to_theirs(maps, state))
    # Name the knobs of the nearer target.
    wrong = min(gpt2.mismatches(config), llama.mismatches(config), key=len)
    targets = f"GPT-2 ({gpt2.REQUIREMENTS}) or Llama ({llama.REQUIREMENTS})"
    raise _refuse(network, wrong, targets)


def plan_encoder_only(network: EncoderOnly, task: str) -> ExportPlan:
    config, vocab, layers = network.config, network.vocab_sizes[0], len(network.layers)
    wrong = bert.mismatches(config) + attention_mismatches(config)
    classify = network.classifier is not None
    if classify and network.pooler.kind != "cls":
        wrong.append(f"model.pooling={network.pooler.kind}")
    if wrong:
        raise _refuse(network, wrong, f"BERT ({bert.REQUIREMENTS}, pooling=cls)")
    state = network.state_dict()
    type_vocab = 0 if network.segment_embed is None else network.segment_embed.num_embeddings
    if type_vocab == 0:  # BERT always adds a segment embedding: one row of zeros adds nothing
        state["segment_embed.weight"] = torch.zeros(1, config.d_model)
    pad_id = network.tok_embed.embedding.padding_idx
    maps = bert.body_maps(layers, config.d_model, vocab)
    if classify:
        arguments = bert.hf_config(
            config,
            vocab,
            layers,
            False,
            type_vocab,
            pad_id,
            network.classifier.out_features,
            network.classifier_dropout.p,
        )
        maps += bert.pooler_maps() + bert.classifier_maps()
        return ExportPlan(
            "BertForSequenceClassification", "BertConfig", arguments, to_theirs(maps, state)
        )
    tied = network.mlm_head.decoder.weight is network.tok_embed.weight
    arguments = bert.hf_config(config, vocab, layers, tied, type_vocab, pad_id)
    maps += bert.mlm_head_maps(vocab)
    architecture = "BertForMaskedLM"
    if network.nsp_head is not None:  # both pretraining heads
        maps += bert.pooler_maps() + bert.nsp_head_maps()
        architecture = "BertForPreTraining"
    weights = to_theirs(maps, state)
    weights["cls.predictions.bias"] = weights["cls.predictions.decoder.bias"]  # one tensor there
    return ExportPlan(architecture, "BertConfig", arguments, weights)


def plan_export(network: torch.nn.Module, task: str, eos_id: int | None = None) -> ExportPlan:
    """The transformers model a trained network becomes; a ConfigError naming the knob when
    none can hold it (raised before anything is written)."""
    if isinstance(network, DecoderOnly):
        return plan_decoder_only(network, task, eos_id)
    if isinstance(network, EncoderOnly):
        return plan_encoder_only(network, task)
    raise ConfigError(
        f"a {type(network).__name__} cannot be exported: transformers has no model with the "
        "same computation (BART, T5 and Marian differ in positions, norms or scaling); "
        "export a GPT (model=gpt) or a BERT (model=bert)"
    )


def build_hf_model(plan: ExportPlan) -> torch.nn.Module:
    """The transformers model of `plan`, its weights loaded (strict: every one is set)."""
    transformers = transformers_module("attnlab-export")
    config = getattr(transformers, plan.config_class)(**plan.config)
    model = getattr(transformers, plan.architecture)(config).eval()
    model.load_state_dict(plan.state, strict=True)
    return model


def write_model(plan: ExportPlan, out: str | Path) -> Path:
    """The model of `plan` as `out`/model.safetensors and config.json."""
    model = build_hf_model(plan)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    return out


def export(
    module: AttnLabModule,
    datamodule: LightningDataModule,
    out: str | Path,
    facts: RunFacts | None = None,
) -> tuple[Path, HFTokenizer | None]:
    """Write a trained module's network (safetensors + config.json; a causal LM's
    generation_config.json), its datamodule's tokenizer and, given the run's `facts`, a model
    card (README.md) to `out`; returns `out` and the tokenizer written (None for synthetic
    data). attnlab-export (attnlab/run/export.py) loads the checkpoint."""
    transformers = transformers_module("attnlab-export")  # before any work
    spec = module.task.spec
    plan = plan_export(module.network, module.task.name, spec.eos_id)
    tokenizer = hf_tokenizer(datamodule)
    out = write_model(plan, out)
    if PIPELINES.get(plan.architecture) == "text-generation":  # over save_pretrained's default
        settings = transformers.GenerationConfig(**generation_config(plan.config))
        settings.save_pretrained(out)
    if facts is not None:
        card = model_card(plan.architecture, facts, out.name, tokenizer is not None)
        (out / "README.md").write_text(card)
    if tokenizer is not None:
        tokenizer.save(
            out, plan.config.get("n_positions") or plan.config.get("max_position_embeddings")
        )
    return out, tokenizer
