"""Callbacks that the distributed tests add to real `attnlab-train` runs from the command line
(`+callbacks.probe._target_=tests.distributed_helpers.RankProbe`, with the repo on PYTHONPATH),
and workers for ranks that a test spawns itself (`spawn_ranks`)."""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl


class RankProbe(pl.Callback):
    """Each rank writes `<run dir>/rank<N>.json`: where it ran, in which world, with which seed,
    and the training windows it was given (as lists of token ids)."""

    def __init__(self) -> None:
        self.rows: list[list[int]] = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.rows += batch["input_ids"].tolist()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "seed": os.environ.get("PL_GLOBAL_SEED"),
            "root_dir": str(trainer.default_root_dir),
            "rows": self.rows,
        }
        path = Path(trainer.default_root_dir) / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(record))


class KillRank(pl.Callback):
    """Fault injection: after training step `step`, rank `rank` dies (`how=exit`: os._exit, no
    clean-up) or hangs (`how=hang`: sleeps, out of every collective).

    Every rank first writes its pid to `<pid_dir>/rank<N>.pid`, so a test can check that no
    process outlives the job.
    """

    def __init__(self, rank: int, step: int, pid_dir: str, how: str = "exit") -> None:
        self.rank = rank
        self.step = step
        self.pid_dir = Path(pid_dir)
        self.how = how

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        (self.pid_dir / f"rank{trainer.global_rank}.pid").write_text(str(os.getpid()))

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.global_rank == self.rank and trainer.global_step >= self.step:
            if self.how == "hang":
                time.sleep(3600)
            os._exit(17)


# --- ranks spawned by a test (torch.multiprocessing), for FSDP2 on CPU with gloo -------------

# Tiny networks of every architecture, each on a task it trains.
SHARDED_NETWORKS = {
    "gpt": ["model=gpt", "data=toy_lm"],
    "bert": ["model=bert", "data=toy_mlm"],
    "encdec": ["model=encdec", "data=reverse"],
    "gpt_seq2seq": ["model=gpt", "data=reverse"],
    # the chunked loss reads hidden_states and the (root's, tied) head weight: no forward call
    "gpt_chunked": ["model=gpt", "data=toy_lm", "task.loss_impl=chunked"],
    # μP's groups (hidden matrices at lr / width_mult) from the sharded parameters' names.
    "gpt_mup": ["model=gpt", "data=toy_lm", "model.parametrization=mup", "model.mup_base_width=16"],
}
# Classifiers (`classify`, which calls `encode` inside it) need SST-2's files.
SHARDED_CLASSIFIERS = {
    "bert": ["model=bert", "data=sst2"],
    "gpt": ["model=gpt", "data=sst2"],
    "encdec": ["model=encdec", "data=sst2", "model.pooling=decoder"],
}
TINY_SIZES = [
    "model.d_model=32",
    "model.n_heads=2",
    "model.d_ff=64",
    "model.dropout=0.0",
    "trainer.accelerator=cpu",
]


def spawn_ranks(worker: Callable[..., None], world_size: int, *args: Any) -> None:
    """Run `worker(rank, world_size, port, *args)` in `world_size` fresh processes, joined with
    a gloo process group by `init_gloo`; an error in any rank is raised here."""
    import torch.multiprocessing as mp

    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(world_size, port, *args), nprocs=world_size, join=True)


def init_gloo(rank: int, world_size: int, port: int) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)


def group_names(network: Any, weight_decay: float = 0.1) -> dict[str, Any]:
    """Each optimiser group of `parameter_groups(network)`: its weight decay, its parameters'
    names (tied tensors under their first name) and its lr (μP's groups have their own)."""
    from attnlab.optim import parameter_groups

    names = {id(p): n for n, p in network.named_parameters()}
    return {
        g["name"]: [g["weight_decay"], [names[id(p)] for p in g["params"]], g.get("lr")]
        for g in parameter_groups(network, weight_decay, lr=1e-3)
    }


def fsdp_matches_one_process(
    rank: int,
    world_size: int,
    port: int,
    out_dir: str,
    seed: int,
    max_norm: float,
    networks: dict[str, list[str]] | None = None,
) -> None:
    """On each rank: every network of `networks` (default SHARDED_NETWORKS) built twice from
    the same seed, one kept whole (the reference, which this rank runs alone) and one sharded by
    FullyShardedStrategy over the ranks. Writes `rank<N>.json`: for each, parameter groups and
    FLOPs per token of both, and loss and gradient norm of one step of its task on rank 0's
    batch; for a GPT, per AdamW step on a global batch (each rank its share when sharded), the
    clipped gradient norm of both and the largest weight difference (the sharded one with
    activation checkpointing)."""
    import torch
    from torch.distributed._composable import checkpoint
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor

    from attnlab import run as build
    from attnlab.models.block import TransformerBlock
    from attnlab.optim import parameter_groups
    from attnlab.run.distributed import FullyShardedStrategy
    from tests.conftest import compose_config

    torch.set_num_threads(1)
    init_gloo(rank, world_size, port)
    strategy = FullyShardedStrategy()
    mesh = init_device_mesh(  # what Lightning's setup_environment makes
        "cpu", (world_size, 1), mesh_dim_names=("data_parallel", "tensor_parallel")
    )
    strategy._device_mesh = mesh
    result: dict[str, Any] = {}
    for name, overrides in (networks or SHARDED_NETWORKS).items():
        cfg = compose_config(Path(out_dir) / f"cfg{rank}", [*overrides, *TINY_SIZES])
        torch.manual_seed(seed)
        module = build.build_module(cfg, build.build_datamodule(cfg))
        reference, task = module.network, module.task
        torch.manual_seed(seed)
        sharded = build.build_module(cfg, build.build_datamodule(cfg)).network
        strategy.shard(sharded)
        local_shapes = [tuple(p.to_local().shape) for p in sharded.parameters()]
        result[name] = {
            "dtensors": all(isinstance(p, DTensor) for p in sharded.parameters()),
            "local_numel": sum(math.prod(s) for s in local_shapes),
            "numel": sum(p.numel() for p in reference.parameters()),
            "groups": [group_names(reference), group_names(sharded)],
            "flops": [task.flops_per_token(n, 16) for n in (reference, sharded)],
        }
        # One step of the network's own task (its entry points: encode, decode, mlm_logits...)
        # on rank 0's batch, on every rank: the averaged sharded gradient is the reference's.
        datamodule = build.build_datamodule(cfg)
        datamodule.prepare_data()
        datamodule.setup("fit")
        batch = [next(iter(datamodule.train_dataloader()))]
        torch.distributed.broadcast_object_list(batch, src=0)
        losses, norms = [], []
        for network in (reference, sharded):
            loss = task.step(network, batch[0], "train")
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(network.parameters(), float("inf"))
            norms.append(float(norm.full_tensor() if isinstance(norm, DTensor) else norm))
            losses.append(float(loss.detach()))
        result[name]["step"] = {"losses": losses, "norms": norms}
    # A few training steps of the GPT: clipping (active: max_norm is below the norms) and AdamW
    # with weight decay on the matrices; the blocks recompute their activations in backward.
    cfg = compose_config(Path(out_dir) / f"cfg{rank}", [*SHARDED_NETWORKS["gpt"], *TINY_SIZES])
    torch.manual_seed(seed)
    module = build.build_module(cfg, build.build_datamodule(cfg))
    reference, task = module.network, module.task
    torch.manual_seed(seed)
    sharded = build.build_module(cfg, build.build_datamodule(cfg)).network
    strategy = FullyShardedStrategy(
        activation_checkpointing=["attnlab.models.block.TransformerBlock"]
    )
    strategy._device_mesh = mesh
    strategy.shard(sharded)
    blocks = [m for m in sharded.modules() if isinstance(m, TransformerBlock)]
    checkpointed = bool(blocks) and all(checkpoint.state(b) is not None for b in blocks)
    optimizers = [
        torch.optim.AdamW(parameter_groups(n, 0.1), lr=3e-3, eps=1e-6) for n in (reference, sharded)
    ]
    vocab, per_rank, steps = reference.lm_head.out_features, 4, 3
    data = torch.Generator().manual_seed(seed)  # the same global batches on every rank
    norms, differences = [], []
    for _ in range(steps):
        tokens = torch.randint(0, vocab, (world_size * per_rank, 17), generator=data)
        batch = {"input_ids": tokens[:, :-1], "labels": tokens[:, 1:]}
        mine = {k: v[rank * per_rank : (rank + 1) * per_rank] for k, v in batch.items()}
        step_norms = []
        for network, optimizer, inputs in zip(
            (reference, sharded), optimizers, (batch, mine), strict=True
        ):
            optimizer.zero_grad()
            task.step(network, inputs, "train").backward()
            norm = torch.nn.utils.clip_grad_norm_(network.parameters(), max_norm)
            step_norms.append(float(norm.full_tensor() if isinstance(norm, DTensor) else norm))
            optimizer.step()
        norms.append(step_norms)
        whole = dict(reference.named_parameters())
        differences.append(
            max(
                float((p.full_tensor() - whole[n]).detach().abs().max())
                for n, p in sharded.named_parameters()
            )
        )
    result["training"] = {
        "norms": norms,
        "differences": differences,
        "checkpointed": checkpointed,
    }
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))
    torch.distributed.destroy_process_group()


def fsdp_policy_and_compiled_units(
    rank: int, world_size: int, port: int, out_dir: str, seed: int
) -> None:
    """On each rank: a GPT sharded by FullyShardedStrategy with trainer=fsdp's default policy
    (bf16 parameters, fp32 reductions) and compile options set (the eager backend: dynamo
    traces each unit, no C++ build). Writes `rank<N>.json`: each unit's policy dtypes, whether
    each block was compiled before it was sharded, the dtype a block's matmul saw, the dtype
    of the gradients and the loss."""
    import torch
    from hydra.utils import instantiate
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule

    from attnlab import run as build
    from attnlab.models.block import TransformerBlock
    from attnlab.run.distributed import FullyShardedStrategy
    from tests.conftest import compose_config

    torch.set_num_threads(1)
    init_gloo(rank, world_size, port)
    overrides = [*SHARDED_NETWORKS["gpt"], "trainer=fsdp", *TINY_SIZES]
    cfg = compose_config(Path(out_dir) / f"cfg{rank}", overrides)
    strategy = instantiate(cfg.trainer.strategy)  # trainer=fsdp's policy, as configured
    assert isinstance(strategy, FullyShardedStrategy)
    strategy._device_mesh = init_device_mesh(
        "cpu", (world_size, 1), mesh_dim_names=("data_parallel", "tensor_parallel")
    )
    strategy.compile_options = {"backend": "eager"}
    torch.manual_seed(seed)
    network = build.build_module(cfg, build.build_datamodule(cfg)).network
    compiled_first: list[bool] = []
    fully_shard = torch.distributed.fsdp.fully_shard

    def watched(module: Any, **kwargs: Any) -> Any:  # compiled before fully_shard?
        if isinstance(module, TransformerBlock):
            compiled_first.append(module._compiled_call_impl is not None)
        return fully_shard(module, **kwargs)

    import attnlab.run.distributed as distributed

    distributed.fully_shard = watched
    strategy.shard(network)
    distributed.fully_shard = fully_shard
    units = [m for m in network.modules() if isinstance(m, FSDPModule)]
    policies = sorted(
        {
            (
                str(u._get_fsdp_state()._mp_policy.param_dtype),
                str(u._get_fsdp_state()._mp_policy.reduce_dtype),
            )
            for u in units
        }
    )
    seen: list[str] = []
    block = next(m for m in network.modules() if isinstance(m, TransformerBlock))
    linear = next(m for m in block.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_pre_hook(lambda m, args: seen.append(str(m.weight.dtype)))
    tokens = torch.randint(0, 64, (4, 17), generator=torch.Generator().manual_seed(seed + rank))
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    loss = network(tokens[:, :-1]).float().logsumexp(-1).mean()
    loss.backward()
    result = {
        "units": len(units),
        "policies": policies,
        "compiled_first": compiled_first,
        "compiled_graphs": torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs,
        "matmul_dtype": seen,
        "grad_dtypes": sorted({str(p.grad.dtype) for p in network.parameters()}),
        "loss": float(loss.detach()),
    }
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))
    torch.distributed.destroy_process_group()
