"""The public extension points: a new architecture and a new position scheme, both defined and
registered in this file alone, train through the real training path (`attnlab.run.train.train`)."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from attnlab.models import (
    NETWORKS,
    POSITION_SCHEMES,
    DecoderOnly,
    LearnedPositionalEmbedding,
    ModelConfig,
    MultiHeadAttention,
    PositionScheme,
    build_norm,
    network_class,
    register_network,
    register_position_scheme,
    unregister_network,
    unregister_position_scheme,
)
from attnlab.models.kv_cache import KVCache
from attnlab.run import ConfigError
from attnlab.run.train import train

# A small GPT-sized run on the synthetic toy LM (no download).
STEPS = 30
SMALL_LM = [
    "data=toy_lm",
    "model=gpt",
    "model.d_model=32",
    "model.n_heads=2",
    "model.n_layers=2",
    f"trainer.max_steps={STEPS}",
    "trainer.val_check_interval=10",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.log_every_n_steps=5",
    "trainer.accelerator=cpu",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "print_config=false",
]
UNIFORM_LOSS = math.log(64)  # data/toy_lm.yaml: vocab_size 64


class AttentionOnlyBlock(nn.Module):
    """Pre-LN causal self-attention and no feed-forward network: the attention-only
    Transformer of Elhage et al. (2021). Takes the TransformerBlock arguments it needs."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm1 = build_norm(config.norm, config.d_model, config.layer_norm_eps, config.bias)
        self.self_attn = MultiHeadAttention.from_config(config)

    def forward(
        self,
        x: Tensor,
        padding_mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        prefix_len: int = 0,
        **unused: object,
    ) -> Tensor:
        """x: (B, T, D) -> (B, T, D)."""
        h = self.norm1(x)
        return x + self.self_attn(
            h, key_padding_mask=padding_mask, causal=causal, cache=cache, prefix_len=prefix_len
        )


class AttentionOnlyLM(DecoderOnly):
    """A GPT whose blocks have no feed-forward network; everything else is DecoderOnly's."""

    blocks_built = 0  # how many blocks this class made: proof that training used it

    def make_block(self, config: ModelConfig, cross_attention: bool) -> nn.Module:
        type(self).blocks_built += 1
        return AttentionOnlyBlock(config)


class ScaledLearnedPositions(LearnedPositionalEmbedding):
    """Learned positions times one trained scalar gate (starting at 1)."""

    def __init__(self, d_model: int, max_len: int):
        super().__init__(d_model, max_len)
        self.gate = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor, start: int = 0, positions: Tensor | None = None) -> Tensor:
        """x: (B, T, D) -> x + gate * E[positions]."""
        position_vectors = super().forward(torch.zeros_like(x), start, positions)  # (B, T, D)
        return x + self.gate * position_vectors


@pytest.fixture
def registered() -> Iterator[None]:
    """Register this file's architecture and position scheme; remove them afterwards."""
    register_network("attention_only")(AttentionOnlyLM)
    register_position_scheme(PositionScheme("scaled_learned", "embeddings", ScaledLearnedPositions))
    yield
    unregister_network("attention_only")
    unregister_position_scheme("scaled_learned")


def trained_state(run_dir: Path) -> dict[str, Tensor]:
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    return checkpoint["state_dict"]


def test_registered_architecture_trains(registered, train_config, tmp_path: Path) -> None:
    assert network_class("attention_only") is AttentionOnlyLM
    AttentionOnlyLM.blocks_built = 0
    target = f"{AttentionOnlyLM.__module__}.{AttentionOnlyLM.__qualname__}"
    result = train(train_config(*SMALL_LM, f"model._target_={target}", base=[]))

    assert AttentionOnlyLM.blocks_built >= 2  # the network of the run was ours
    state = trained_state(tmp_path)
    layer_keys = [k for k in state if k.startswith("network.layers.")]
    assert layer_keys and not [k for k in layer_keys if ".ffn." in k]  # no feed-forward
    assert result["metrics"]["test/loss"] < UNIFORM_LOSS  # it learned something


def test_registered_position_scheme_trains(registered, train_config, tmp_path: Path) -> None:
    result = train(train_config(*SMALL_LM, "model.pos=scaled_learned", base=[]))

    state = trained_state(tmp_path)
    gate = state["network.pos.gate"]  # the scheme's module sat where positions are added
    assert gate.item() != 1.0  # and took part in training (it got gradients)
    assert result["metrics"]["test/loss"] < UNIFORM_LOSS


def test_registration_is_undone_and_unknown_names_are_refused(registered) -> None:
    assert "scaled_learned" in POSITION_SCHEMES and "attention_only" in NETWORKS
    with pytest.raises(ValueError, match="registered already"):
        register_position_scheme(PositionScheme("learned", "embeddings", ScaledLearnedPositions))
    with pytest.raises(ValueError, match=r"model\.pos='scaled_lerned' .*'scaled_learned'"):
        DecoderOnly(10, d_model=8, n_heads=2, n_layers=1, pos="scaled_lerned")


EXTENSION_MODULE = """
from attnlab.models import PositionScheme, register_position_scheme
from tests.test_extension import ScaledLearnedPositions

register_position_scheme(PositionScheme("ext_scaled", "embeddings", ScaledLearnedPositions))
"""


def test_extensions_key_imports_the_users_module_first(
    train_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`extensions=[module]` on the command line registers a scheme before the config is
    checked, so `model.pos=<its name>` is valid in the same run."""
    package = tmp_path / "user_ext"
    package.mkdir()
    (package / "attnlab_positions.py").write_text(EXTENSION_MODULE)
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.delitem(sys.modules, "attnlab_positions", raising=False)
    try:
        overrides = ["extensions=[attnlab_positions]", "model.pos=ext_scaled"]
        result = train(train_config(*SMALL_LM, *overrides, base=[]))
        assert "network.pos.gate" in trained_state(tmp_path)
        assert result["metrics"]["test/loss"] < UNIFORM_LOSS
    finally:
        POSITION_SCHEMES.pop("ext_scaled", None)


def test_a_missing_extension_is_refused_naming_it(train_config) -> None:
    with pytest.raises(ConfigError, match=r"extensions: cannot import 'no_such_ext_module'"):
        train(train_config(*SMALL_LM, "extensions=[no_such_ext_module]", base=[]))


class ClaimsMaskedLM(nn.Module):
    """Says it does masked LM but implements none of the MaskedLM protocol."""

    supported_tasks = ("masked_lm",)

    def __init__(self, vocab_size: int, **unused: object):
        super().__init__()
        self.linear = nn.Linear(4, vocab_size)


def test_a_network_without_its_tasks_protocol_is_refused_before_training(train_config) -> None:
    target = f"{ClaimsMaskedLM.__module__}.{ClaimsMaskedLM.__qualname__}"
    cfg = train_config(
        "data=toy_mlm",
        "model=bert",
        f"model._target_={target}",
        "data.toy_train_lines=200",
        "data.toy_eval_lines=20",
        "trainer.max_steps=1",
        "trainer.accelerator=cpu",
        "print_config=false",
        base=[],
    )
    with pytest.raises(ConfigError, match=r"model: task 'masked_lm' needs a MaskedLM network"):
        train(cfg)


def test_registered_architecture_by_name(registered, train_config) -> None:
    """`model._target_: attnlab.models.build_network` with `model.name` builds a registered
    network by its name (a YAML file can pick it so)."""
    AttentionOnlyLM.blocks_built = 0
    by_name = ["model._target_=attnlab.models.build_network", "+model.name=attention_only"]
    result = train(train_config(*SMALL_LM, *by_name, base=[]))
    assert AttentionOnlyLM.blocks_built >= 2
    assert result["metrics"]["test/loss"] < UNIFORM_LOSS


class DeclaresNothing(nn.Module):
    def __init__(self, vocab_size: int, **unused: object):
        super().__init__()


def test_a_network_without_supported_tasks_is_refused_naming_the_protocol(train_config) -> None:
    target = f"{DeclaresNothing.__module__}.{DeclaresNothing.__qualname__}"
    with pytest.raises(ConfigError, match=r"declares no supported_tasks"):
        train(train_config(*SMALL_LM, f"model._target_={target}", base=[]))
