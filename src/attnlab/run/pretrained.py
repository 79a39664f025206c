"""Start a network from a pretrained checkpoint (`init.pretrained`): its tokenizer for the data,
its body (embeddings + blocks) for the network; heads start fresh."""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from attnlab.protocols import PretrainedBody
from attnlab.run.artefacts import write_tokenizer_file
from attnlab.run.checkpoints import load_checkpoint
from attnlab.run.validation import ConfigError


def pretrained_tokenizer_file(ckpt_path: str, cache_dir: str | None) -> str:
    """Write the tokenizer saved in a checkpoint to the cache; returns its path."""
    checkpoint = load_checkpoint(ckpt_path, key="init.pretrained")
    if checkpoint.get("tokenizer") is None:
        raise ConfigError(f"init.pretrained={ckpt_path} holds no tokenizer to fine-tune with")
    return write_tokenizer_file(checkpoint["tokenizer"], cache_dir)


def load_pretrained_body(
    network: torch.nn.Module, ckpt_path: str, datamodule: pl.LightningDataModule
) -> None:
    """Copy the body (embeddings + blocks) of a pretrained checkpoint into `network`.

    Heads start fresh. Fails, naming what differs, when the tokenizers or tensor shapes differ.
    """
    if not isinstance(network, PretrainedBody):
        raise ConfigError(f"init.pretrained: {type(network).__name__} cannot load a body")
    checkpoint = load_checkpoint(ckpt_path, key="init.pretrained")
    saved = (checkpoint.get("tokenizer") or {}).get("fingerprint")
    ours = getattr(getattr(datamodule, "tokenizer", None), "fingerprint", None)
    if saved != ours:
        raise ConfigError(
            f"init.pretrained={ckpt_path} was trained with tokenizer {saved}, but the data uses "
            f"{ours}; leave data.tokenizer_path unset to reuse the checkpoint's tokenizer"
        )
    state = {
        key.removeprefix("network."): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith("network.")
    }
    body = network.body_state_dict()
    mismatched = [
        f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(value.shape)}"
        for key, value in body.items()
        if key in state and state[key].shape != value.shape
    ]
    if mismatched:
        raise ConfigError(f"init.pretrained={ckpt_path} does not fit: " + "; ".join(mismatched))
    try:
        network.load_body_state_dict(state)
    except ValueError as error:
        raise ConfigError(f"init.pretrained={ckpt_path}: {error}") from error


def freeze_layers(network: torch.nn.Module, n_layers: int) -> None:
    """`init.freeze_layers`: freeze the embeddings and the first `n_layers` blocks."""
    if not isinstance(network, PretrainedBody):
        raise ConfigError(f"init.freeze_layers: {type(network).__name__} cannot freeze layers")
    network.freeze_layers(n_layers)
