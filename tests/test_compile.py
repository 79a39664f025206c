"""compile=true compiles the training step (network + loss), never generation; tf32 on CUDA only."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator
from omegaconf import OmegaConf, open_dict

from attnlab.callbacks import SampleText
from attnlab.data.spec import DataSpec
from attnlab.models import DecoderOnly
from attnlab.run import ConfigError, build_datamodule, build_module
from attnlab.run.assemble import CompiledTrainingStep, compile_training_step, use_tf32
from attnlab.run.checkpoint_io import read_checkpoint
from attnlab.run.train import train
from attnlab.tasks import CausalLMTask
from tests.test_causal_lm import FAST_LM


@pytest.mark.slow  # inductor compiles forward and backward: ~20-60 s on 2 cores
def test_compiled_training_step_gives_eager_loss_and_gradients() -> None:
    seed = int(torch.randint(0, 2**31, ()).item())
    torch.manual_seed(seed)
    vocab, length = 37, 12
    spec = DataSpec(task="causal_lm", vocab_size=vocab, decode=str, max_len=length)
    network = DecoderOnly(vocab_size=vocab, d_model=32, n_heads=2, n_layers=2, max_len=length)
    task = CausalLMTask(spec)
    batch = {"input_ids": torch.randint(0, vocab, (3, length))}
    batch["labels"] = torch.randint(0, vocab, (3, length))

    def loss_and_grads() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        network.zero_grad(set_to_none=True)
        loss = task.step(network, batch, "train")
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in network.named_parameters()}

    eager_loss, eager_grads = loss_and_grads()
    torch._dynamo.reset()
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    compile_training_step(task)
    assert isinstance(task.step, CompiledTrainingStep)
    loss, grads = loss_and_grads()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs  # it did compile
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-6, msg=f"seed {seed}")
    for name, grad in eager_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # The network itself is not compiled: generation runs it eagerly.
    assert network._compiled_call_impl is None


class WhereForwardRuns(pl.Callback):
    """Records, for every network forward, whether it ran inside generate and under dynamo."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, bool]] = []  # (in generate, compiling)
        self.generating = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        network = pl_module.network
        generate = network.generate

        def tagged(*args: Any, **kwargs: Any) -> torch.Tensor:
            self.generating = True
            try:
                return generate(*args, **kwargs)
            finally:
                self.generating = False

        network.generate = tagged
        network.register_forward_pre_hook(
            lambda module, args: self.calls.append((self.generating, torch.compiler.is_compiling()))
        )


@pytest.mark.slow  # a compiled training run: ~1 min on 2 cores
def test_compile_true_samples_and_generates_uncompiled_and_checkpoints_load_eager(
    train_config,
) -> None:
    cfg = train_config("data=toy_lm", "model=gpt", *FAST_LM, "test=false", "compile=true", base=[])
    where = WhereForwardRuns()
    sampler = SampleText(prompts=["1 2 3"], max_new_tokens=4, top_k=None)
    train(cfg, extra_callbacks=[sampler, where])
    compiled = [c for g, c in where.calls if not g]
    generated = [c for g, c in where.calls if g]
    assert any(compiled)  # the training step went through dynamo
    assert len(generated) >= 4 and not any(generated)  # sampling did not
    # A compiled run's checkpoint loads into an eager module, strictly, and back.
    state = read_checkpoint(f"{cfg.paths.output_dir}/checkpoints/best.ckpt")["state_dict"]
    with open_dict(cfg):
        cfg.compile = False
    datamodule = build_datamodule(cfg)
    eager = build_module(cfg, datamodule)
    assert not isinstance(eager.task.step, CompiledTrainingStep)
    eager.load_state_dict(state, strict=True)
    assert set(eager.state_dict()) == set(state)


def test_tf32_only_on_cuda_and_as_configured() -> None:
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        use_tf32(OmegaConf.create({"tf32": True}), CPUAccelerator())
        assert torch.get_float32_matmul_precision() == "highest"  # CPUs are left alone
        use_tf32(OmegaConf.create({"tf32": True}), CUDAAccelerator())
        # readable with the API Lightning's CUDA accelerator checks it with
        assert torch.get_float32_matmul_precision() == "high"
        assert torch.backends.cuda.matmul.allow_tf32
        use_tf32(OmegaConf.create({"tf32": False}), CUDAAccelerator())
        assert torch.get_float32_matmul_precision() == "highest"
        use_tf32(OmegaConf.create({}), CUDAAccelerator())  # configs without the key: on
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)


def test_train_config_has_the_run_level_switches(train_config) -> None:
    cfg = train_config()
    assert cfg.tf32 is True and cfg.compile is False and cfg.async_checkpoint is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_tf32_on_a_gpu_run(train_config) -> None:
    before = torch.get_float32_matmul_precision()
    try:
        train(train_config("trainer.accelerator=gpu", "test=false"))
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)


@pytest.mark.parametrize("override", ["compile=abc", "tf32=1", "async_checkpoint=yes"])
def test_a_switch_that_is_not_a_bool_is_refused_before_any_work(
    train_config, tmp_path, override: str
) -> None:
    key, value = override.split("=")
    with pytest.raises(ConfigError, match=rf"^{key}=.*{value}.* is not valid: expected true or"):
        train(train_config(override))
    assert not (tmp_path / "checkpoints").exists()
