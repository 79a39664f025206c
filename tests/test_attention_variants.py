"""A user's attention variants, written and registered in a test-local extension module alone:
their settings on the command line and in `-m` sweeps, GPT and BERT training with them, and
KV-cached generation equal to uncached. Plus: one ModelConfig per training run, and a
multirun's `hydra.searchpath` reaching the pre-check of its jobs."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from attnlab.models import DecoderOnly, ModelConfig
from attnlab.models.attention_variants import ATTENTION_VARIANTS, unregister_attention_variant
from attnlab.run import ConfigError
from attnlab.run.extensions import import_extensions_from_argv
from attnlab.run.train import train
from tests.conftest import run_cli
from tests.test_extension import SMALL_LM

EXT = "attnlab_test_attention_ext"
EXTENSION_MODULE = '''
"""Block-local attention (a mask) and a temperature on the scores (a score change)."""
from attnlab.models import register_attention_variant


def block_local(b, h, q_idx, kv_idx, settings):
    size = settings["my_block"]
    return q_idx // size == kv_idx // size


def temperature(score, b, h, q_idx, kv_idx, settings):
    return score / settings["my_temp"]


register_attention_variant("block_local", mask_mod=block_local, settings={"my_block": None})
register_attention_variant("temperature", score_mod=temperature, settings={"my_temp": None})
'''
FEWER = ["trainer.max_steps=6", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]
SHORT = [a for a in SMALL_LM if a.split("=")[0] not in {f.split("=")[0] for f in FEWER}] + FEWER
SMALL_MLM = [
    "data=toy_mlm",
    "model=bert",
    "model.d_model=32",
    "model.n_heads=2",
    "model.n_layers=2",
    *SHORT[3:],
]


@pytest.fixture
def extension(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The extension module in its own folder on sys.path (and PYTHONPATH, for commands)."""
    folder = tmp_path / "user_ext"
    folder.mkdir()
    (folder / f"{EXT}.py").write_text(EXTENSION_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))
    monkeypatch.delitem(sys.modules, EXT, raising=False)
    import_extensions_from_argv([f"extensions=[{EXT}]"])  # as the entry point does
    assert {"block_local", "temperature"} <= set(ATTENTION_VARIANTS)
    yield folder
    for name in ("block_local", "temperature"):
        if name in ATTENTION_VARIANTS:
            unregister_attention_variant(name)


@pytest.mark.parametrize("setup", [SHORT, SMALL_MLM], ids=["gpt", "bert"])
def test_variant_settings_train(extension: Path, train_config, setup: list[str]) -> None:
    variant = [f"extensions=[{EXT}]", "model.my_block=4", "model.my_temp=2.0"]
    cfg = train_config(*setup, *variant, base=[])
    assert cfg.model.my_block == 4 and cfg.model.my_temp == 2.0
    result = train(cfg)
    assert math.isfinite(result["metrics"]["test/loss"])  # trained through both variants
    network = DecoderOnly(64, d_model=32, n_heads=2, n_layers=1, my_block=4, my_temp=2.0)
    attention = network.layers[0].self_attn
    assert len(attention.mask_mods) == 1 and len(attention.score_mods) == 1


def test_a_bad_variant_setting_is_refused_naming_it(extension: Path, train_config) -> None:
    with pytest.raises(ConfigError, match=r"model\.my_block=-1 is not valid"):
        train(train_config(*SHORT, f"extensions=[{EXT}]", "model.my_block=-1", base=[]))


def test_variants_change_attention_as_their_functions_say(extension: Path) -> None:
    torch.manual_seed(0)
    plain = DecoderOnly(64, d_model=32, n_heads=2, n_layers=1, max_len=16).eval()
    torch.manual_seed(0)
    local = DecoderOnly(64, d_model=32, n_heads=2, n_layers=1, max_len=16, my_block=4).eval()
    x = torch.randint(0, 64, (2, 12))
    y = x.clone()
    y[:, 3] = (x[:, 3] + 1) % 64  # block 0: blocks 1 and 2 do not see it
    torch.testing.assert_close(local(x)[:, 4:], local(y)[:, 4:])
    assert not torch.allclose(plain(x)[:, 4:], plain(y)[:, 4:])
    torch.testing.assert_close(local(x)[:, :4], plain(x)[:, :4])  # block 0 is plain causal


def test_cached_generation_equals_uncached_with_both_variants(extension: Path) -> None:
    torch.manual_seed(0)
    net = DecoderOnly(
        64, d_model=32, n_heads=2, n_layers=2, max_len=32, pos="rope", my_block=3, my_temp=0.5
    ).eval()
    prompt = torch.randint(0, 64, (3, 5))
    cached = net.generate(prompt, 14, temperature=0.0)
    assert torch.equal(cached, net.generate(prompt, 14, temperature=0.0, use_cache=False))


def test_variant_settings_sweep_on_the_command_line_with_a_searchpath(
    extension: Path, tmp_path: Path
) -> None:
    """`-m model.my_block=2,4` from `attnlab-train`, with the model from a user's config folder
    (`hydra.searchpath`), which the multirun's pre-check of each job must find too."""
    conf = tmp_path / "user_conf" / "model"
    conf.mkdir(parents=True)
    (conf / "tiny_gpt.yaml").write_text("defaults:\n  - gpt\n  - _self_\n\nd_model: 32\n")
    args = [a for a in SHORT if not a.startswith(("model=", "model.d_model", "trainer.max_steps"))]
    run_cli(
        "attnlab-train",
        "-m",
        f"hydra.searchpath=[file://{tmp_path / 'user_conf'}]",
        "model=tiny_gpt",
        f"extensions=[{EXT}]",
        "model.my_block=2,4",
        "trainer.max_steps=3",
        *args,
        f"paths.log_dir={tmp_path / 'logs'}",
        cwd=tmp_path,
        timeout=600,
    )
    configs = sorted((tmp_path / "logs").rglob(".hydra/config.yaml"))
    blocks = sorted(yaml.safe_load(c.read_text())["model"]["my_block"] for c in configs)
    assert blocks == [2, 4]
    assert all(yaml.safe_load(c.read_text())["model"]["d_model"] == 32 for c in configs)


def test_a_training_run_builds_its_model_config_once(
    train_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[ModelConfig] = []
    original = ModelConfig.__post_init__

    def counting(self: ModelConfig) -> None:
        built.append(self)
        original(self)

    monkeypatch.setattr(ModelConfig, "__post_init__", counting)
    train(train_config(*SHORT, "trainer.max_steps=2", base=[]))
    assert len(built) == 1
