"""Distributed training: FSDP from a config, and Lightning's DDP launcher inside Hydra multiruns.

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
from typing import Any

import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class
from omegaconf import read_write
from pytorch_lightning.strategies import FSDPStrategy

# Set by Lightning's launcher in the launching process; an external launcher (torchrun, SLURM)
# sets its own before the process starts, and those are kept.
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
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
    from hydra._internal.utils import get_args_parser  # Hydra's own parser: same flags

    args, _ = get_args_parser().parse_known_args(list(argv[1:]))
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


def fsdp_strategy(
    auto_wrap: Sequence[str] = ("attnlab.models.block.TransformerBlock",),
    activation_checkpointing: Sequence[str] = (),
    timeout: timedelta | None = None,
    **kwargs: Any,
) -> FSDPStrategy:
    """Lightning's FSDPStrategy with the module classes given by name, as a config can.

    `auto_wrap`: each module of these classes becomes its own FSDP unit (sharded, gathered just
    for its forward and backward); `activation_checkpointing`: these recompute their activations
    in the backward pass. Other arguments go to FSDPStrategy (sharding_strategy, state_dict_type,
    cpu_offload, ...).
    """
    if timeout is not None:
        kwargs["timeout"] = timeout
    if activation_checkpointing:
        kwargs["activation_checkpointing_policy"] = {get_class(c) for c in activation_checkpointing}
    return FSDPStrategy(auto_wrap_policy={get_class(c) for c in auto_wrap}, **kwargs)
