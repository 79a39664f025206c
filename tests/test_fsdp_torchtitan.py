"""trainer=fsdp the torchtitan way: bf16 parameters with fp32 reductions by default, each block
compiled before fully_shard, a world of one not sharded; on two gloo ranks the same losses as
trainer=ddp_cpu. The spawned ranks cost their imports: marked slow where they spawn."""

from __future__ import annotations

import csv
import json
import logging
import random
from pathlib import Path

import pytest
import torch
from torch.distributed.tensor import DTensor

from attnlab.run import build_datamodule, build_module, build_trainer
from attnlab.run.assemble import CompiledTrainingStep
from attnlab.run.train import train
from tests.conftest import compose_config
from tests.distributed_helpers import fsdp_policy_and_compiled_units, spawn_ranks
from tests.test_distributed import TINY_LM, train_cli


@pytest.fixture(autouse=True)
def no_process_group_left_behind():
    """A one-rank gloo group holds its port: gone after each test, or a later launch of two
    ranks would inherit it and fail to bind. (The launch's MASTER_PORT, LOCAL_RANK, ... go
    with tests/conftest.py's restore_environment.)"""
    yield
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def test_fsdp_compiles_units_not_the_step_and_defaults_to_bf16_with_fp32_reductions(
    tmp_path: Path,
) -> None:
    cfg = compose_config(tmp_path, ["trainer=fsdp", "model=gpt", "data=toy_lm", "compile=true"])
    assert (cfg.trainer.strategy.param_dtype, cfg.trainer.strategy.reduce_dtype) == (
        "bfloat16",
        "float32",
    )
    module = build_module(cfg, build_datamodule(cfg))
    assert not isinstance(module.task.step, CompiledTrainingStep)  # the strategy compiles
    cfg.trainer.accelerator = "cpu"  # to build the Trainer here
    cfg.trainer.devices = 1
    cfg.compile_mode = "max-autotune-no-cudagraphs"
    strategy = build_trainer(cfg, [], []).strategy
    assert strategy.compile_options == {"mode": "max-autotune-no-cudagraphs", "fullgraph": False}
    # Without trainer=fsdp the whole step is compiled, as before.
    plain = compose_config(tmp_path / "ddp", ["model=gpt", "data=toy_lm", "compile=true"])
    assert isinstance(build_module(plain, build_datamodule(plain)).task.step, CompiledTrainingStep)


def test_a_world_of_one_is_not_sharded_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import lightning.pytorch as pl

    seen = {}

    class Probe(pl.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            seen["dtensors"] = any(isinstance(p, DTensor) for p in pl_module.parameters())

    cfg = compose_config(
        tmp_path, [*TINY_LM, "trainer=fsdp_cpu", "trainer.devices=1", "trainer.max_steps=2"]
    )
    with caplog.at_level(logging.INFO):
        result = train(cfg, extra_callbacks=[Probe()])
    assert result["global_step"] == 2
    assert seen == {"dtensors": False}
    lines = [r.getMessage() for r in caplog.records if "world of one" in r.getMessage()]
    assert len(lines) == 1 and "not sharding" in lines[0]


@pytest.mark.slow
def test_two_ranks_gather_bf16_reduce_fp32_and_run_blocks_compiled_first(tmp_path: Path) -> None:
    spawn_ranks(fsdp_policy_and_compiled_units, 2, str(tmp_path), random.randrange(2**31))
    for rank in (0, 1):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["units"] > 2  # the blocks and the root
        assert result["policies"] == [["torch.bfloat16", "torch.float32"]]  # every unit
        assert result["compiled_first"] and all(result["compiled_first"])
        assert result["compiled_graphs"] > 0  # dynamo traced the blocks
        assert result["matmul_dtype"] == ["torch.bfloat16"]  # gathered in bf16
        assert result["grad_dtypes"] == ["torch.float32"]  # the fp32 shards' gradients
        assert result["loss"] == result["loss"]  # not NaN


def _train_losses(run_dir: Path) -> list[float]:
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    return [float(r["train/loss"]) for r in rows if r.get("train/loss")]


@pytest.mark.slow
def test_fsdp_cpu_gives_the_losses_of_ddp_cpu(tmp_path: Path) -> None:
    """Two gloo ranks each, the same seed, batches and steps: FSDP2 (sharded, fp32) and DDP
    log the same training losses, step by step (float summation order apart)."""
    common = [*TINY_LM, "data.batch_size=8", "data.train_samples_per_epoch=96", "seed=3"]
    common += ["trainer.max_epochs=1", "trainer.log_every_n_steps=1", "test=false"]
    losses = {}
    for trainer in ("ddp_cpu", "fsdp_cpu"):
        run_dir = tmp_path / trainer
        train_cli(*common, f"trainer={trainer}", f"hydra.run.dir={run_dir}", cwd=tmp_path)
        losses[trainer] = _train_losses(run_dir)
    assert len(losses["ddp_cpu"]) == 6
    assert losses["fsdp_cpu"] == pytest.approx(losses["ddp_cpu"], rel=1e-5)
