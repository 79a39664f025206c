"""Distributed training: FSDP2 from a config, and Lightning's DDP launcher inside Hydra multiruns.

Lightning starts ranks 1..N-1 of a node by running the command line again with LOCAL_RANK set
(`_SubprocessScriptLauncher`); under Hydra it appends `hydra.run.dir=<HydraConfig's run.dir>`.
In a multirun (`attnlab-train -m seed=1,2 trainer=ddp_cpu`) that command line is the whole sweep:
each launched rank would run every job of the sweep itself, in a sweep directory of its own, and
pair up with the launching process only by luck (same job order). `multirun_job` makes the
command line that of the running job alone, in that job's directory, and afterwards undoes what
the launch left behind (LOCAL_RANK, WORLD_SIZE, ... in the environment, the process group), so
the next job of the sweep launches its own ranks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class
from lightning.pytorch.strategies import ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import read_write
from torch import nn
from torch.distributed._composable import checkpoint
from torch.distributed.fsdp import (
    FSDPModule,
    MixedPrecisionPolicy,
    fully_shard,
    register_fsdp_forward_method,
)

from attnlab.run.checkpoint_io import (
    DamagedCheckpointError,
    read_checkpoint,
    release_kept_checkpoint,
)
from attnlab.utils import hydra_compat

# Set by Lightning's launcher in the launching process; an external launcher (torchrun, SLURM)
# sets its own before the process starts, and those are kept.
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
# The networks' entry points that tasks and tools call instead of forward.
FORWARD_METHODS = ("encode", "decode", "classify", "mlm_logits", "hidden_states")
# Hydra overrides of the sweep itself, which the command of one job must not repeat.
SWEEP_KEYS = ("hydra.mode", "hydra.sweep", "hydra.launcher", "hydra/sweeper", "hydra/launcher")


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("~+")


def job_command(
    argv: Sequence[str], task_overrides: Sequence[str], hydra_overrides: Sequence[str] = ()
) -> list[str]:
    """The command line that runs one job of a multirun on its own.

    Hydra's config flags (--config-path/-name/-dir) are kept; `-m` and the sweep's overrides
    become the job's own overrides, and `hydra.mode=RUN` (an `hparams_search` config sets
    MULTIRUN in the config itself).
    """
    args, _ = hydra_compat.args_parser().parse_known_args(list(argv[1:]))
    flags: list[str] = []
    for flag, value in (
        ("--config-path", args.config_path),
        ("--config-name", args.config_name),
        ("--config-dir", args.config_dir),
    ):
        if value is not None:
            flags += [flag, value]
    kept = [o for o in hydra_overrides if not _override_key(o).startswith(SWEEP_KEYS)]
    return [argv[0], *flags, *task_overrides, *kept, "hydra.mode=RUN"]


@contextmanager
def multirun_job() -> Iterator[None]:
    """Around one job of a Hydra multirun, so that DDP ranks launched by Lightning run this job
    only, in its directory (see the module docstring). Does nothing outside a multirun."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        yield
        return
    hydra_cfg = HydraConfig.get()
    argv = list(sys.argv)
    env = {key: os.environ.get(key) for key in LAUNCH_ENV}
    had_group = dist.is_available() and dist.is_initialized()
    sys.argv = job_command(argv, list(hydra_cfg.overrides.task), list(hydra_cfg.overrides.hydra))
    # Lightning appends `hydra.run.dir=<run.dir>` to the launched ranks' command: this job's dir.
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = argv
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        # The next job (other ranks, maybe another world size) needs a group of its own.
        if not had_group and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def stop_launched_ranks(trainer: Any, grace_s: float = 10.0) -> None:
    """After a failed fit, end the ranks Lightning launched from this process (node rank 0).

    Lightning kills them itself only on KeyboardInterrupt. After any other error, a rank that is
    stuck where no collective times out (a hung data loader, a sleep, a deadlock) would outlive
    the job and hold its devices. Ranks get `grace_s` to exit on their own (after a SIGTERM they
    are stopping too), then SIGKILL.
    """
    procs: list[subprocess.Popen] = getattr(trainer.strategy.launcher, "procs", None) or []
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class FullyShardedStrategy(ModelParallelStrategy):
    """Fully sharded data parallel (FSDP2, torch's `fully_shard`) over every rank, as a config
    can ask for it: Lightning's ModelParallelStrategy with a one-dimensional data-parallel mesh.

    Each module of the classes in `shard_modules` becomes its own unit (its parameters gathered
    only for its forward and backward), the rest of the network one root unit.
    The LightningModule's `configure_model` calls `shard(network)`. Unlike FSDP1's flattened
    shards, parameters keep their names and logical shapes (DTensors): parameter groups by
    ndim, FLOPs by numel, `clip_grad_norm_` (a norm over all ranks) and state-dict keys are
    those of the unsharded network.

    `activation_checkpointing`: modules of these classes recompute their activations in the
    backward (torch's composable checkpoint: the names stay). `param_dtype`/`reduce_dtype`
    (conf/trainer/fsdp.yaml: bfloat16/float32, torchtitan's): the dtypes parameters are
    gathered in and gradients reduced in; None keeps the parameters' own (fp32).
    `reshard_after_forward=False` keeps gathered parameters from forward to backward (more
    memory, less communication). `save_distributed_checkpoint=False`: one full checkpoint file
    assembled on rank 0, which the single-device tools read. (No CPU offload: Lightning moves
    the whole sharded model to the GPU after `configure_model`.)
    """

    def __init__(
        self,
        shard_modules: Sequence[str] = ("attnlab.models.block.TransformerBlock",),
        activation_checkpointing: Sequence[str] = (),
        reshard_after_forward: bool = True,
        param_dtype: str | None = None,
        reduce_dtype: str | None = None,
        save_distributed_checkpoint: bool = False,
        timeout: timedelta | None = None,
        process_group_backend: str | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        super().__init__(
            save_distributed_checkpoint=save_distributed_checkpoint,
            process_group_backend=process_group_backend,
            **kwargs,
        )
        self.shard_modules = tuple(get_class(c) for c in shard_modules)
        self.checkpointed_modules = tuple(get_class(c) for c in activation_checkpointing)
        self.reshard_after_forward = reshard_after_forward
        self.mp_policy = MixedPrecisionPolicy(
            param_dtype=_dtype("param_dtype", param_dtype),
            reduce_dtype=_dtype("reduce_dtype", reduce_dtype),
        )
        # compile=true: torch.compile's options for each unit, set by the run (assemble.py)
        self.compile_options: dict[str, Any] | None = None

    def setup_environment(self) -> None:
        # Every rank holds one shard (no tensor parallelism): data-parallel over the world.
        # ModelParallelStrategy's "auto" would make it one rank per node.
        self._data_parallel_size = self.num_nodes * self.num_processes
        self._tensor_parallel_size = 1
        super().setup_environment()

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict:
        """Lightning's FSDP2 loader reads a full checkpoint file itself (torch.load), past
        attnlab's checkpoint IO: check its checksum here as that IO does, on rank 0 (a resume
        verified it before fit, and the copy it holds for this read is taken and let go of on
        every rank instead of staying in memory for the whole run)."""
        path = Path(self.broadcast(checkpoint_path))
        damaged = None
        if path.is_file():
            if self.global_rank == 0:
                try:
                    read_checkpoint(path)
                except DamagedCheckpointError as error:
                    damaged = str(error)
            else:
                release_kept_checkpoint()
        damaged = self.broadcast(damaged)
        if damaged is not None:
            raise DamagedCheckpointError(damaged)
        model = self.model
        if model is not None and not any(isinstance(m, FSDPModule) for m in model.modules()):
            # A world of one, unsharded: Lightning's FSDP2 loader wants a sharded module.
            checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
            module = self.lightning_module
            module.load_state_dict(checkpoint.pop("state_dict"), strict=module.strict_loading)
            for optimizer, state in zip(
                self.optimizers, checkpoint.get("optimizer_states", []), strict=False
            ):
                optimizer.load_state_dict(state)
            return checkpoint
        return super().load_checkpoint(path, weights_only=weights_only)

    def shard(self, network: nn.Module) -> None:
        """Shard `network` in place over the data-parallel ranks, the torchtitan way: each unit
        compiled first (compile=true: `compile_options`, nn.Module.compile, names kept), then
        fully_shard'ed; a world of one is not sharded at all (nothing to shard: gathers and
        reductions would only cost). Once: a second call (testing after fitting) does nothing.
        """
        if isinstance(network, FSDPModule) or getattr(network, "_units_prepared", False):
            return
        network._units_prepared = True
        for module in network.modules():
            if self.checkpointed_modules and isinstance(module, self.checkpointed_modules):
                checkpoint(module)
        units = [m for m in network.modules() if isinstance(m, self.shard_modules)]
        for unit in units if self.compile_options is not None else ():
            unit.compile(**self.compile_options)  # before fully_shard: its hooks stay eager
        mesh = self.device_mesh["data_parallel"]
        if mesh.size() == 1:
            rank_zero_info(
                "trainer=fsdp on a world of one: not sharding (nothing to shard; torchtitan "
                "does the same at dp_shard=1); the trainer's precision applies as for ddp"
            )
            return
        options = {"mesh": mesh, "mp_policy": self.mp_policy}
        for unit in units:
            fully_shard(unit, reshard_after_forward=self.reshard_after_forward, **options)
        # The root keeps what the units do not own (embeddings, final norm, heads). Backward
        # starts with the head: resharding it after forward only to gather it again is waste.
        fully_shard(network, reshard_after_forward=False, **options)
        # Tasks call these entry points rather than forward (attnlab/protocols.py); FSDP gathers
        # the root's parameters (embeddings, heads) only around what it knows as a forward.
        for method in FORWARD_METHODS:
            if callable(getattr(network, method, None)):
                register_fsdp_forward_method(network, method)


def _dtype(key: str, name: str | None) -> torch.dtype | None:
    if name is None:
        return None
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(
            f"trainer.strategy.{key}={name!r}: not a floating-point torch dtype "
            "(valid: bfloat16, float16, float32, or null)"
        )
    return dtype
