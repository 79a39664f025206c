"""`init.from_hf=DIR`: start a GPT or BERT from a local Hugging Face checkpoint directory
(config.json, the weights, tokenizer.json), e.g. one `huggingface-cli download` wrote.

The model's settings (model.*: widths, depth, heads, knobs, dropout) come from config.json,
so the user names only the directory and a matching `model=` (gpt for GPT-2, Llama and Qwen3,
bert for BERT); data with a `tokenizer_path` reads text with the directory's tokenizer. The
weights of the body load, and of each head the checkpoint has and the task uses (the LM head,
BERT's masked-LM head and pooler); other heads, e.g. a new classifier, start fresh.
A setting attnlab cannot represent fails naming it.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, open_dict
from tokenizers import Tokenizer

from attnlab.interop import bert, gpt2, llama
from attnlab.interop.hf import transformers_module
from attnlab.interop.mapping import TensorMap, to_ours
from attnlab.interop.tokenizer import TOKENIZER_FILE, hf_tokenizer
from attnlab.models.decoder_only import DecoderOnly
from attnlab.models.encoder_only import EncoderOnly
from attnlab.models.registry import network_class_of
from attnlab.utils.errors import ConfigError

log = logging.getLogger(__name__)

# config.json's model_type -> (the module that maps it, our network class, its model= option)
FAMILIES: dict[str, tuple[ModuleType, type[torch.nn.Module], str]] = {
    "gpt2": (gpt2, DecoderOnly, "gpt"),
    "llama": (llama, DecoderOnly, "gpt"),
    "qwen3": (llama, DecoderOnly, "gpt"),
    "bert": (bert, EncoderOnly, "bert"),
}
KEY = "init.from_hf"


def _hf_config(directory: str) -> Any:
    path = Path(directory)
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"{KEY}={directory} is not a Hugging Face model directory (no config.json there); "
            "download one with `huggingface-cli download gpt2 --local-dir gpt2`"
        )
    try:
        config = transformers_module(KEY).AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as error:  # not JSON, no model_type, ...: named, one line
        raise ConfigError(f"{KEY}={directory}: its config.json cannot be read ({error})") from None
    if config.model_type not in FAMILIES:
        raise ConfigError(
            f"{KEY}={directory} holds a {config.model_type!r} model; attnlab imports "
            f"{sorted(FAMILIES)}"
        )
    return config


def _reads_tokenizer_file(data: DictConfig) -> bool:
    """Whether the data module takes a `tokenizer_path` (WordPiece data: masked LM and
    classification), whether or not its config file names the key."""
    if "tokenizer_path" in data:
        return True
    try:
        return "tokenizer_path" in inspect.signature(get_class(data._target_)).parameters
    except (ImportError, ValueError, TypeError):
        return False


def configure_from_hf(cfg: DictConfig) -> None:
    """Set model.* from the directory's config.json and, where the data reads text with a
    tokenizer file (data.tokenizer_path null), the directory's tokenizer.json. In place;
    a no-op without init.from_hf."""
    directory = (cfg.get("init") or {}).get("from_hf")
    if not directory:
        return
    if cfg.init.get("pretrained"):
        raise ConfigError(
            f"set either init.pretrained={cfg.init.pretrained} or {KEY}={directory}, not both"
        )
    hf = _hf_config(directory)
    family, network_class, option = FAMILIES[hf.model_type]
    chosen = network_class_of(cfg.model)
    if not issubclass(chosen, network_class):
        raise ConfigError(
            f"{KEY}={directory} holds a {hf.model_type} model ({network_class.__name__}); "
            f"choose model={option} (model is {chosen.__name__})"
        )
    try:
        arguments = family.model_arguments(hf)
    except ValueError as error:
        raise ConfigError(f"{KEY}={directory}: {error}") from None
    with open_dict(cfg):
        cfg.model.update(arguments)
        tokenizer = Path(directory) / TOKENIZER_FILE
        if _reads_tokenizer_file(cfg.data) and cfg.data.get("tokenizer_path") is None:
            if not tokenizer.is_file():
                raise ConfigError(
                    f"{KEY}={directory} has no {TOKENIZER_FILE} for data.tokenizer_path; "
                    "give data.tokenizer_path=<its tokenizer.json>"
                )
            cfg.data.tokenizer_path = str(tokenizer)


def _check_vocabulary(directory: str, hf: Any, network: torch.nn.Module, datamodule: Any) -> None:
    """The data's tokenizer must be the checkpoint's: same size, and the same tokens where
    both tokenizers are known."""
    vocab_size = network.vocab_sizes[0]
    if vocab_size != hf.vocab_size:
        raise ConfigError(
            f"{KEY}={directory} has a vocabulary of {hf.vocab_size} tokens but the data's has "
            f"{vocab_size}: tokenize the data with its tokenizer.json (data=tokens: "
            "attnlab-prepare tokenizer=file tokenizer_path=<dir>/tokenizer.json)"
        )
    path = Path(directory) / TOKENIZER_FILE
    ours = hf_tokenizer(datamodule)
    if ours is not None and path.is_file():
        theirs = Tokenizer.from_file(str(path)).get_vocab(with_added_tokens=True)
        if ours.tokenizer.get_vocab(with_added_tokens=True) != theirs:
            raise ConfigError(
                f"{KEY}={directory}: the data's tokenizer has other tokens than {path}; "
                "tokenize the data with it"
            )


def _hf_state(directory: str, hf: Any) -> dict[str, torch.Tensor]:
    """The checkpoint's weights under transformers' names, as the model class that holds every
    head it may have loads them (renamed old keys included); heads it lacks are left out."""
    transformers = transformers_module(KEY)
    if hf.model_type == "bert":
        architectures = getattr(hf, "architectures", None) or []
        name = next((a for a in architectures if a == "BertForSequenceClassification"), None)
        model_class = getattr(transformers, name or "BertForPreTraining")
    else:
        model_class = transformers.AutoModelForCausalLM
    # The weights in the file's dtype (transformers 4 loads them as float32, 5 as saved): the
    # network's own float32 tensors take them exactly either way. No dtype argument: 4.x
    # before 4.56 calls it torch_dtype, 5.x dtype.
    model, info = model_class.from_pretrained(directory, output_loading_info=True)
    missing = set(info["missing_keys"])
    return {k: v for k, v in model.state_dict().items() if k not in missing}


def _maps(hf: Any, network: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[TensorMap]:
    """The tensor maps of the weights to load: the body, and each head the network has and
    the checkpoint holds."""
    config, layers, vocab = network.config, len(network.layers), network.vocab_sizes[0]
    if hf.model_type == "gpt2":
        return gpt2.tensor_maps(layers, vocab, lm_head=network.lm_head is not None)
    if hf.model_type in ("llama", "qwen3"):
        return llama.tensor_maps(config, layers, vocab, lm_head=network.lm_head is not None)
    maps = bert.body_maps(layers, config.d_model, vocab)
    heads = []
    if network.mlm_head is not None:
        heads.append(bert.mlm_head_maps(vocab))
    if network.pooler is not None and network.pooler.dense is not None:
        heads.append(bert.pooler_maps())
    if getattr(network, "nsp_head", None) is not None:
        heads.append(bert.nsp_head_maps())
    classifier = state.get("classifier.weight")
    mine = network.classifier
    if mine is not None and classifier is not None and classifier.shape == mine.weight.shape:
        heads.append(bert.classifier_maps())
    for head in heads:
        if all(name in state for m in head for name in m.theirs):
            maps += head
        else:
            log.info("%s: no %s in the checkpoint; it starts fresh", KEY, head[0].ours)
    return maps


def load_hf_weights(network: torch.nn.Module, directory: str, datamodule: Any) -> None:
    """Copy the checkpoint's weights into `network` (built with configure_from_hf's settings)."""
    hf = _hf_config(directory)
    _check_vocabulary(directory, hf, network, datamodule)
    state = _hf_state(directory, hf)
    maps = _maps(hf, network, state)
    try:
        ours = to_ours(maps, state)
    except KeyError as error:
        raise ConfigError(f"{KEY}={directory}: {error.args[0]}") from None
    result = network.load_state_dict(ours, strict=False)
    fresh = sorted(result.missing_keys)
    if fresh:
        log.info("%s: %d tensors start fresh: %s", KEY, len(fresh), ", ".join(fresh[:8]))
