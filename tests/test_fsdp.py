"""FSDP2 (trainer=fsdp) on CPU: two gloo ranks shard real attnlab networks with torch's
fully_shard, as FullyShardedStrategy does inside Lightning's ModelParallelStrategy. Spawning
the ranks costs their imports (~10 s; ~60 s on a loaded 2-core machine): marked slow.

The end-to-end runs through `attnlab-train trainer=fsdp_cpu` are in test_distributed.py.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy
from torch import nn

from attnlab import run as build
from attnlab.optim import parameter_groups
from tests.conftest import compose_config
from tests.distributed_helpers import (
    SHARDED_CLASSIFIERS,
    SHARDED_NETWORKS,
    fsdp_matches_one_process,
    spawn_ranks,
)


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Both ranks' results of `fsdp_matches_one_process` (one spawn for all the tests here)."""
    out_dir = tmp_path_factory.mktemp("fsdp")
    seed = random.randrange(2**31)  # fresh networks and batches every run
    spawn_ranks(fsdp_matches_one_process, 2, str(out_dir), seed, 0.5)
    return [json.loads((out_dir / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
@pytest.mark.parametrize("network", list(SHARDED_NETWORKS))
def test_sharding_keeps_parameter_groups_and_flops(sharded_run: list[dict], network: str) -> None:
    """Same names in the same groups with the same weight decay, and the same FLOPs per token,
    whole and sharded, on every rank; the network really is sharded (DTensors, each rank
    holding about half); and its task's step (which calls encode, decode, mlm_logits rather
    than forward) gives the same loss and gradient norm."""
    for rank in sharded_run:
        result = rank[network]
        assert result["dtensors"]
        assert result["local_numel"] < 0.6 * result["numel"]
        whole, sharded = result["groups"]
        assert sharded == whole
        assert whole["decay"][0] == 0.1 and len(whole["decay"][1]) > 0  # matrices are decayed
        assert whole["no_decay"][0] == 0.0 and len(whole["no_decay"][1]) > 0
        if network.endswith("mup"):  # d_model 32, base 16: hidden matrices at lr / 2
            assert whole["hidden/decay"][2] == 1e-3 / 2 and len(whole["hidden/decay"][1]) > 0
        flops_whole, flops_sharded = result["flops"]
        assert flops_whole > 0 and flops_sharded == flops_whole
        # Its task's training step through the sharded network: same loss, same gradient.
        (loss, sharded_loss), (norm, sharded_norm) = result["step"].values()
        assert sharded_loss == pytest.approx(loss, rel=1e-5)
        assert sharded_norm == pytest.approx(norm, rel=1e-5) and norm > 0


@pytest.mark.slow
@pytest.mark.slow
@pytest.mark.needs_data("sst2")
def test_sharded_classifiers_step_like_the_whole_network(tmp_path: Path) -> None:
    """`classify` gathers the root's parameters around a nested `encode` (BERT) or decoder
    step (pooling=decoder): same loss and gradient norm as the whole network."""
    spawn_ranks(
        fsdp_matches_one_process,
        2,
        str(tmp_path),
        random.randrange(2**31),
        0.5,
        SHARDED_CLASSIFIERS,
    )
    for rank in (0, 1):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for name in SHARDED_CLASSIFIERS:
            (loss, sharded_loss), (norm, sharded_norm) = result[name]["step"].values()
            assert sharded_loss == pytest.approx(loss, rel=1e-5), name
            assert sharded_norm == pytest.approx(norm, rel=1e-5) and norm > 0, name
            assert result[name]["groups"][1] == result[name]["groups"][0], name


def test_sharded_training_steps_equal_one_process_on_the_global_batch(
    sharded_run: list[dict],
) -> None:
    """Three AdamW steps with gradient clipping: two ranks, each on half the batch, sharded and
    recomputing the blocks' activations, against one unsharded network on the whole batch. The
    clipping norm is the norm over all shards (the unsharded network's; one shard's own would be
    about 1/sqrt(2) of it), clipping was active, and the weights stay equal up to float
    summation order (measured: 2.5e-7)."""
    for rank in sharded_run:
        training = rank["training"]
        for whole, sharded in training["norms"]:
            assert sharded == pytest.approx(whole, rel=1e-5)
        assert training["norms"][0][0] > 0.5  # above max_norm: the clip changed the step
        assert max(training["differences"]) < 1e-5
        assert training["checkpointed"]  # recomputing activations changes no gradient
    assert sharded_run[0]["training"] == sharded_run[1]["training"]  # ranks agree


def test_parameter_groups_refuse_fsdp1_flattened_shards() -> None:
    """FSDP1 (Lightning's `trainer.strategy=fsdp`) names parameters through its wrapper and
    flattens them to 1-D: weight decay would silently be off, so the groups refuse it."""
    network = nn.Sequential()
    network.add_module("_fsdp_wrapped_module", nn.Linear(4, 4))
    with pytest.raises(ValueError, match=r"_fsdp_wrapped_module.*trainer=fsdp \(FSDP2\)"):
        parameter_groups(network, 0.1)
    assert torch.is_tensor(parameter_groups(nn.Linear(4, 4), 0.1)[0]["params"][0])


def test_lightnings_fsdp1_strategy_is_refused_before_wrapping(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, ["model=gpt", "data=toy_lm", "model.d_model=32"])
    module = build.build_module(cfg, build.build_datamodule(cfg))
    module._trainer = SimpleNamespace(strategy=FSDPStrategy())
    with pytest.raises(
        ValueError, match=r"FSDPStrategy \(FSDP1\) is not supported: use trainer=fsdp"
    ):
        module.configure_model()
    module._trainer = SimpleNamespace(strategy=DDPStrategy())
    module.configure_model()  # DDP (and no trainer) leave the network as it is
