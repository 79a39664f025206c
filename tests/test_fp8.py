"""fp8=true: torchao's float8 training. The conversion (which layers, names and checkpoints
unchanged) runs on the CPU; the run is refused in one line before any work where it cannot
run (no torchao, no H100-class GPU). FP8 numerics need the GPU (scripts/gpu_session.sh)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from attnlab.models import DecoderOnly
from attnlab.models.fp8 import convert_to_fp8, fp8_layer_names, fp8_refusal
from attnlab.run import ConfigError
from attnlab.run.train import train
from tests.conftest import compose_config

needs_torchao = pytest.mark.skipif(
    importlib.util.find_spec("torchao") is None, reason="torchao (attnlab[fp8]) not installed"
)


def _gpt() -> DecoderOnly:
    return DecoderOnly(50, d_model=32, n_heads=2, n_layers=2, max_len=16, tie_output=False)


def test_the_blocks_linear_layers_are_chosen_and_the_head_is_not() -> None:
    network = _gpt()
    names = fp8_layer_names(network)
    linears = {n for n, m in network.named_modules() if isinstance(m, nn.Linear)}
    assert "lm_head" in linears and "lm_head" not in names  # the readout stays high precision
    assert set(names) == linears - {"lm_head"}
    assert all(n.startswith("layers.") for n in names) and len(names) == 2 * 4  # qkv, out, ffn


@needs_torchao
def test_conversion_swaps_them_for_float8_and_keeps_the_checkpoint_keys() -> None:
    from torchao.float8.float8_linear import Float8Linear

    network = _gpt()
    keys = {k: v.shape for k, v in network.state_dict().items()}
    names = convert_to_fp8(network)
    modules = dict(network.named_modules())
    assert names == sorted(fp8_layer_names(_gpt()))
    assert all(isinstance(modules[n], Float8Linear) for n in names)
    assert not isinstance(modules["lm_head"], Float8Linear)
    assert {k: v.shape for k, v in network.state_dict().items()} == keys
    _gpt().load_state_dict(network.state_dict())  # an unconverted network loads it


def test_fp8_is_refused_before_any_work_where_it_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = compose_config(tmp_path, ["data=toy_lm", "model=gpt", "fp8=true"])
    if fp8_refusal() is None:
        pytest.skip("an H100-class GPU and torchao are here: fp8 runs")
    with pytest.raises(ConfigError, match=r"^fp8=true needs "):
        train(cfg)
    assert not list(tmp_path.rglob("*.ckpt"))
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a)
    )
    assert fp8_refusal() == (
        "fp8=true needs torchao's float8 training, which is not installed: "
        "pip install 'attnlab[fp8]'"
    )
    monkeypatch.setattr(importlib.util, "find_spec", real)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA A100-SXM4-80GB")
    if importlib.util.find_spec("torchao") is not None:
        assert fp8_refusal() == (
            "fp8=true needs an H100-class GPU (compute capability 8.9 or more); "
            "NVIDIA A100-SXM4-80GB has 8.0"
        )


def test_a_checkpoint_of_an_fp8_run_loads_for_evaluation_anywhere(tmp_path: Path) -> None:
    """float8 is how a run trained: attnlab-eval / -generate rebuild the plain network (no
    torchao, no GPU needed) and load its weights."""
    from attnlab.run.trained import load_trained_module
    from tests.conftest import ROOT

    checkpoint = torch.load(ROOT / "tests/fixtures/checkpoints/gpt.ckpt", weights_only=False)
    checkpoint["hyper_parameters"]["config"]["fp8"] = True
    path = tmp_path / "fp8.ckpt"
    torch.save(checkpoint, path)
    _, _, module = load_trained_module(str(path))
    names = {type(m).__name__ for m in module.network.modules()}
    assert "Float8Linear" not in names and "Linear" in names


@pytest.mark.skipif(fp8_refusal() is not None, reason="needs torchao and an H100-class GPU")
def test_fp8_training_follows_bf16_on_an_h100(tmp_path: Path) -> None:
    """The numerics, where they can run: 20 steps of a small GPT with fp8=true end near the
    same run in bf16 (float8's rounding, not a different curve)."""
    base = ["data=toy_lm", "model=gpt", "model.d_model=128", "model.n_heads=4"]
    base += ["trainer=gpu", "trainer.max_steps=20", "trainer.max_epochs=-1", "test=false"]
    base += ["trainer.limit_val_batches=2", "callbacks.rich_progress_bar=null", "seed=0"]
    losses = {}
    for fp8 in ("false", "true"):
        result = train(compose_config(tmp_path / fp8, [*base, f"fp8={fp8}"]))
        losses[fp8] = result["metrics"]["val/loss"]
    assert losses["true"] == pytest.approx(losses["false"], rel=0.05), losses
