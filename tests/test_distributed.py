"""Distributed training: sharding, DDP = a bigger batch, DDP in multiruns, rank death, FSDP.

The end-to-end tests run `attnlab-train trainer=ddp_cpu` (two gloo processes) from the command
line, as a user would; they are marked slow (CI runs them apart).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.strategies import DDPStrategy, ModelParallelStrategy

from attnlab import run as build
from attnlab.data.loading.lm_windows import RandomOffsetSampler
from attnlab.data.loading.resumable import EpochShuffleSampler
from attnlab.data.loading.sharding import shard_by_rank
from attnlab.data.loading.token_budget import TokenBudgetBatchSampler
from attnlab.models.block import TransformerBlock
from attnlab.run import ConfigError, checkpoint_io
from attnlab.run.checkpoint_io import (
    AtomicCheckpointIO,
    DamagedCheckpointError,
    read_checkpoint,
    with_checksum,
)
from attnlab.run.distributed import FullyShardedStrategy, job_command
from tests.conftest import ROOT, TINY_SETUP, compose_config

# A GPT on the synthetic Markov-chain language: a 2-process run takes ~10 s on 2 CPU cores.
TINY_LM = [
    "model=gpt",
    "data=toy_lm",
    "model.n_layers=2",
    "model.d_model=32",
    "model.n_heads=2",
    "model.d_ff=64",
    "model.dropout=0.0",
    "data.block_size=16",
    "data.num_train_tokens=20000",
    "data.num_val_tokens=2000",
    "data.num_test_tokens=2000",
    "trainer.limit_val_batches=2",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "print_config=false",
]
PROBE = "+callbacks.probe._target_=tests.distributed_helpers.RankProbe"


def train_cli(
    *args: str,
    cwd: Path,
    timeout: float = 240,
    check: bool = True,
    linger_s: float = 15,
    launcher: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """`attnlab-train ...` in its own session, with tests/ importable (the probe callbacks).

    `survivors` on the result: processes of the session (launched ranks) still alive `linger_s`
    after attnlab-train exited. Whatever the outcome, they are killed afterwards.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*launcher, str(Path(sys.executable).parent / "attnlab-train"), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    survivors: list[int] = []
    try:
        out, _ = proc.communicate(timeout=timeout)
        deadline = time.monotonic() + linger_s
        while (survivors := session_members(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.5)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"attnlab-train {' '.join(args)} ran past {timeout} s") from None
    finally:
        with contextlib.suppress(ProcessLookupError):  # the ranks share the session's group
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, "")
    result.survivors = survivors  # type: ignore[attr-defined]
    if check and proc.returncode != 0:
        raise AssertionError(f"attnlab-train failed ({proc.returncode}):\n{out[-6000:]}")
    return result


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of session `sid`."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state ppid pgrp session
            members.append(int(stat.parent.name))
    return members


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


# --- sharding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sampler",
    [RandomOffsetSampler(1000, 96, seed=3), EpochShuffleSampler(96, seed=3)],
    ids=["lm_windows", "toy_seq2seq"],
)
def test_ranks_take_disjoint_interleaved_shares(sampler) -> None:
    """Two ranks with batch B together draw exactly the batches of one process with batch 2B."""
    batch = 8
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        single = list(sampler)
        shards = []
        for rank in (0, 1):
            shard = shard_by_rank(sampler, num_replicas=2, rank=rank)
            shard.set_epoch(epoch)  # what Lightning calls; it must reach the inner sampler
            shards.append(list(shard))
        assert len(shards[0]) == len(shards[1]) == len(single) // 2
        assert not set(shards[0]) & set(shards[1])  # windows differ between ranks
        for k in range(len(single) // (2 * batch)):
            together = (
                shards[0][k * batch : (k + 1) * batch] + shards[1][k * batch : (k + 1) * batch]
            )
            assert sorted(together) == sorted(single[2 * batch * k : 2 * batch * (k + 1)])
    sampler.set_epoch(0)
    first = list(shard_by_rank(sampler, 2, 0))
    sampler.set_epoch(1)
    assert list(shard_by_rank(sampler, 2, 0)) != first  # fresh windows every epoch


def test_single_process_keeps_the_sampler() -> None:
    sampler = EpochShuffleSampler(10)
    assert shard_by_rank(sampler) is sampler  # no process group: nothing to shard


def test_token_budget_eval_batches_cover_every_example_on_two_ranks() -> None:
    rng = np.random.default_rng(0)
    src, tgt = rng.integers(3, 30, 101), rng.integers(3, 30, 101)
    ranks = [list(TokenBudgetBatchSampler(src, tgt, 128, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1])  # ranks step together
    seen = {i for batches in ranks for batch in batches for i in batch}
    assert seen == set(range(101))


class SelfShardingData:
    shards_itself = True


def test_self_sharding_data_turns_lightnings_sampler_off(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, ["trainer=ddp_cpu"])
    trainer = build.build_trainer(cfg, [], [], SelfShardingData())
    assert not trainer._accelerator_connector.use_distributed_sampler
    assert build.build_trainer(cfg, [], [])._accelerator_connector.use_distributed_sampler
    cfg = compose_config(tmp_path, ["trainer=ddp_cpu", "+trainer.use_distributed_sampler=true"])
    trainer = build.build_trainer(cfg, [], [], SelfShardingData())
    assert trainer._accelerator_connector.use_distributed_sampler  # the config has the last word


# --- trainer configs ------------------------------------------------------------------------


def test_ddp_configs_build_a_strategy_with_the_configured_timeout(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, ["trainer=ddp_cpu", "trainer.strategy.timeout.minutes=2"])
    trainer = build.build_trainer(cfg, [], [])
    assert isinstance(trainer.strategy, DDPStrategy)
    assert trainer.strategy._timeout.total_seconds() == 120
    assert trainer.world_size == 2 and trainer.num_nodes == 1
    cfg = compose_config(tmp_path, ["trainer=ddp", "trainer.num_nodes=2"])
    assert cfg.trainer.num_nodes == 2 and cfg.trainer.accelerator == "gpu"
    # A strategy by name still replaces the object.
    cfg = compose_config(
        tmp_path, ["trainer=ddp", "trainer.strategy=ddp_find_unused_parameters_true"]
    )
    assert cfg.trainer.strategy == "ddp_find_unused_parameters_true"


def test_fsdp_config_shards_each_transformer_block_with_fsdp2(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, ["trainer=fsdp", "model=gpt", "data=toy_lm"])
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.gradient_clip_val == 1.0  # clipping stays on: it works on FSDP2 shards
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FullyShardedStrategy)
    assert isinstance(strategy, ModelParallelStrategy)  # Lightning's FSDP2 strategy
    assert strategy.shard_modules == (TransformerBlock,)
    assert strategy.checkpointed_modules == ()
    assert strategy._timeout.total_seconds() == 30 * 60
    assert strategy._save_distributed_checkpoint is False  # one full file, written by rank 0
    # torchtitan's policy: gathered and computed in bf16, gradients reduced in fp32
    assert strategy.mp_policy.param_dtype == torch.bfloat16
    assert strategy.mp_policy.reduce_dtype == torch.float32
    # The networks are built from that class, so there are units to shard.
    network = build.build_module(cfg, build.build_datamodule(cfg)).network
    assert any(isinstance(m, TransformerBlock) for m in network.modules())
    tuned = instantiate(
        cfg.trainer.strategy,
        activation_checkpointing=["attnlab.models.block.TransformerBlock"],
        param_dtype="bfloat16",
        reduce_dtype="float32",
    )
    assert tuned.checkpointed_modules == (TransformerBlock,)
    assert tuned.mp_policy.param_dtype == torch.bfloat16
    assert tuned.mp_policy.reduce_dtype == torch.float32
    # Two CPU ranks (gloo): the strategy runs on CPUs too.
    trainer = build.build_trainer(compose_config(tmp_path, ["trainer=fsdp_cpu"]), [], [])
    assert isinstance(trainer.strategy, FullyShardedStrategy)
    assert trainer.world_size == 2 and trainer.precision == "32-true"
    cfg = compose_config(tmp_path, ["trainer=fsdp_cpu", "trainer.strategy.param_dtype=int8"])
    with pytest.raises(ConfigError, match=r"trainer.strategy.param_dtype='int8'.*valid: bfloat16"):
        build.build_trainer(cfg, [], [])


def test_fsdp_checks_the_checksum_of_a_full_checkpoint_and_lets_the_held_copy_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning's FSDP2 loader reads the file past attnlab's checkpoint IO; the strategy
    checks the checksum itself, and takes the copy a resume verified and held for this read
    (which would otherwise stay in memory for the whole run)."""
    loaded: list[Path] = []
    monkeypatch.setattr(  # the sharded load itself needs a process group and a model
        ModelParallelStrategy,
        "load_checkpoint",
        lambda self, path, weights_only=None: loaded.append(path) or {},
    )
    strategy = FullyShardedStrategy()
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.randn(5)}}, path)
    read_checkpoint(path, keep=True)  # what resume_checkpoint does before fit
    assert checkpoint_io._kept is not None
    strategy.load_checkpoint(path)
    assert loaded == [path] and checkpoint_io._kept is None
    damaged = with_checksum({"state_dict": {"w": torch.randn(5)}})
    damaged["state_dict"]["w"] += 1  # contents changed after the checksum was taken
    torch.save(damaged, path)
    with pytest.raises(DamagedCheckpointError, match=r"last\.ckpt is damaged"):
        strategy.load_checkpoint(path)
    assert loaded == [path]  # not loaded


# --- the command of one multirun job --------------------------------------------------------


def test_job_command_is_one_job_of_the_sweep() -> None:
    argv = ["/venv/bin/attnlab-train", "-m", "seed=1,2", "trainer=ddp_cpu", "-cn", "train"]
    hydra_overrides = ["hydra.mode=MULTIRUN", "hydra.sweep.dir=/x", "hydra.verbose=true"]
    command = job_command(argv, ["seed=2", "trainer=ddp_cpu"], hydra_overrides)
    assert command == [
        "/venv/bin/attnlab-train",
        "--config-name",
        "train",
        "seed=2",
        "trainer=ddp_cpu",
        "hydra.verbose=true",
        "hydra.mode=RUN",
    ]
    argv = ["attnlab-train", "--multirun", "--config-dir=/cfg", "hparams_search=optuna"]
    command = job_command(argv, ["hparams_search=optuna", "optimizer.lr=0.001"], [])
    assert "--multirun" not in command and "-m" not in command
    assert command[1:3] == ["--config-dir", "/cfg"]
    assert command[-1] == "hydra.mode=RUN"  # an Optuna search sets MULTIRUN in its config


# --- end to end on two CPU processes --------------------------------------------------------


@pytest.mark.slow
def test_ddp_cpu_run_writes_one_run_dir_and_shards_windows(tmp_path: Path) -> None:
    result = train_cli(
        *TINY_LM,
        "trainer=ddp_cpu",
        "data.batch_size=8",
        "data.train_samples_per_epoch=128",
        "trainer.max_epochs=1",
        PROBE,
        cwd=tmp_path,
    )
    assert result.survivors == []
    runs = list((tmp_path / "logs").rglob("metrics.json"))
    assert len(runs) == 1, runs  # the launched rank made no run directory of its own
    run_dir = runs[0].parent
    assert len(list((tmp_path / "logs" / "train" / "runs").iterdir())) == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert not list(tmp_path.rglob("*.tmp"))
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["world_size"] == 2
    assert metrics["global_step"] == 8  # 128 windows / (8 per rank x 2 ranks)
    assert metrics["tokens_seen"] == 128 * 16  # summed over both ranks
    assert metrics["metrics"]["progress/tokens_seen"] == 128 * 16
    ranks = [read_json(run_dir / f"rank{r}.json") for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert {r["root_dir"] for r in ranks} == {str(run_dir)}
    windows = [{tuple(row) for row in r["rows"]} for r in ranks]
    assert len(windows[0]) == len(windows[1]) == 64
    assert not windows[0] & windows[1]  # every rank trained on different windows
    log = (run_dir / "train.log").read_text()
    assert log.count("Run directory") <= 1  # said once (rank zero), not by every rank


SST2 = pytest.mark.needs_data("sst2")  # a run in a subprocess: skipped without the data


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(["model=bert", "data=sst2"], marks=SST2, id="bert-sst2"),
        pytest.param(["model=gpt", "data=sst2"], marks=SST2, id="gpt-sst2"),
        pytest.param(
            ["model=encdec", "data=sst2", "model.pooling=mean"], marks=SST2, id="encdec-sst2-mean"
        ),
        pytest.param(
            ["model=encdec", "data=sst2", "model.pooling=decoder"],
            marks=SST2,
            id="encdec-sst2-decoder",
        ),
        pytest.param(["model=bert", "data=toy_mlm"], id="bert-mlm"),
        pytest.param(["model=gpt", "data=reverse"], id="gpt-s2s"),
    ],
)
def test_every_architecture_task_pair_trains_under_ddp(tmp_path: Path, variant: list[str]) -> None:
    """Plain DDP (no find_unused_parameters) fails on a parameter without a gradient: every
    network builds only the heads its task uses."""
    result = train_cli(
        *variant,
        "trainer=ddp_cpu",
        "model.d_model=32",
        "model.n_heads=2",
        "model.d_ff=64",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "callbacks.rich_progress_bar=null",
        "print_config=false",
        cwd=tmp_path,
    )
    assert result.survivors == []
    (metrics,) = [read_json(p) for p in (tmp_path / "logs").rglob("metrics.json")]
    assert metrics["world_size"] == 2 and metrics["global_step"] == 3


@pytest.mark.slow
def test_hypotheses_of_every_rank_are_written_once_in_corpus_order(tmp_path: Path) -> None:
    """51 test pairs over 2 ranks: Lightning's sampler pads to 52 (one pair twice); the file
    gathers both ranks' shares and holds each pair once, in corpus order."""
    result = train_cli(
        *TINY_SETUP,
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        "data.num_test=51",
        "callbacks=[default,hypotheses]",
        "callbacks.rich_progress_bar=null",
        "task.decode_on_eval=true",
        cwd=tmp_path,
    )
    assert result.survivors == []
    (run_dir,) = [p.parent for p in (tmp_path / "logs").rglob("metrics.json")]
    lines = (run_dir / "hypotheses" / "test.txt").read_text().splitlines()
    assert len(lines) == 51
    assert all(set(line.split()) <= {str(i) for i in range(3, 32)} for line in lines)


@pytest.mark.slow
def test_torchrun_launches_the_ranks(tmp_path: Path) -> None:
    """The README's torchrun command on one node: Lightning takes ranks from torchrun's
    environment (it launches none itself) and the job writes one run directory."""
    torchrun = str(Path(sys.executable).parent / "torchrun")
    run_dir = tmp_path / "run"
    result = train_cli(
        *TINY_LM,
        "trainer=ddp_cpu",  # devices=2 must match --nproc_per_node
        "data.batch_size=8",
        "data.train_samples_per_epoch=128",
        "trainer.max_epochs=1",
        f"hydra.run.dir={run_dir}",
        PROBE,
        cwd=tmp_path,
        launcher=(
            torchrun,
            "--nnodes=1",
            "--nproc_per_node=2",
            "--rdzv_backend=c10d",
            "--rdzv_endpoint=localhost:0",
            "--no-python",
        ),
    )
    assert result.survivors == []
    assert read_json(run_dir / "metrics.json")["world_size"] == 2
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == ["run"]  # no other run dirs
    assert [read_json(run_dir / f"rank{r}.json")["world_size"] for r in (0, 1)] == [2, 2]


@pytest.mark.slow
def test_two_ddp_processes_with_batch_b_equal_one_process_with_2b(tmp_path: Path) -> None:
    """The issue's check: after N steps, the parameters of a 2-process DDP run with batch B are
    those of a 1-process run with batch 2B (dropout off), and of one with batch B and 2-step
    gradient accumulation. Fixed-length LM windows make every per-rank mean loss a mean over
    the same number of tokens, so averaging the ranks' gradients is the 2B gradient exactly;
    what remains is float summation order. Gradient clipping (on the averaged gradient) and
    AdamW are on. Measured: 4.4e-7 max abs difference; tolerance 1e-5. A run that sees only
    half the data (batch B, 1 process) differs by ~3e-2: the check can fail."""
    common = [
        *TINY_LM,
        "data.train_samples_per_epoch=128",
        "trainer.max_epochs=1",
        "test=false",
        "seed=7",
        "scheduler=constant",
        "optimizer.lr=0.003",
        "optimizer.eps=1e-6",  # AdamW's eps=1e-9 turns float noise on ~0 gradients into lr
        "trainer.gradient_clip_val=0.5",
    ]
    runs = {
        "ddp": ["trainer=ddp_cpu", "data.batch_size=8"],
        "one_2b": ["trainer=cpu", "data.batch_size=16"],
        "accumulate": ["trainer=cpu", "data.batch_size=8", "trainer.accumulate_grad_batches=2"],
        "half_data": ["trainer=cpu", "data.batch_size=8", "trainer.limit_train_batches=8"],
    }
    params = {}
    for name, overrides in runs.items():
        run_dir = tmp_path / name
        train_cli(*common, *overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path)
        checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
        assert checkpoint["global_step"] == 8, name
        params[name] = checkpoint["state_dict"]
    assert read_json(tmp_path / "ddp" / "metrics.json")["world_size"] == 2

    def max_difference(a: str, b: str) -> float:
        return max((params[a][k] - params[b][k]).abs().max().item() for k in params[a])

    assert max_difference("ddp", "one_2b") < 1e-5
    assert max_difference("accumulate", "one_2b") < 1e-5
    assert max_difference("ddp", "half_data") > 1e-3


@pytest.mark.slow
def test_ddp_inside_a_multirun_runs_each_job_once_with_two_ranks(tmp_path: Path) -> None:
    """Lightning launches rank 1 with the command line of the sweep; each job must still be one
    2-rank run in its own directory, and no rank may start a sweep of its own."""
    result = train_cli(
        "-m",
        "seed=1,2",
        "trainer=ddp_cpu",
        *TINY_LM,
        "data.batch_size=8",
        "data.train_samples_per_epoch=64",
        "trainer.max_epochs=1",
        "test=false",
        PROBE,
        cwd=tmp_path,
    )
    assert result.survivors == []
    logs = tmp_path / "logs" / "train"
    assert [p.name for p in logs.iterdir()] == ["multiruns"]  # no single runs either
    sweeps = list((logs / "multiruns").iterdir())
    assert len(sweeps) == 1, sweeps  # the launched ranks started no sweeps
    jobs = sorted(p.name for p in sweeps[0].iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    for job, seed in zip(jobs, ("1", "2"), strict=True):
        job_dir = sweeps[0] / job
        assert read_json(job_dir / "metrics.json")["world_size"] == 2
        ranks = [read_json(job_dir / f"rank{r}.json") for r in (0, 1)]
        assert [(r["rank"], r["world_size"], r["seed"]) for r in ranks] == [
            (0, 2, seed),
            (1, 2, seed),
        ]
        assert {r["root_dir"] for r in ranks} == {str(job_dir)}
        assert sorted(p.name for p in (job_dir / "checkpoints").iterdir()) == [
            "best.ckpt",
            "last.ckpt",
        ]
    assert len(list(tmp_path.rglob("metrics.json"))) == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "rank"),
    [("exit", 1), ("exit", 0), ("hang", 1)],
    ids=["rank1-dies", "rank0-dies", "rank1-hangs"],
)
def test_a_dead_or_hung_rank_ends_the_whole_job(tmp_path: Path, how: str, rank: int) -> None:
    """Rank `rank` dies (os._exit) or hangs mid-training. The job must fail within a bound and
    leave no rank behind. Dying: Lightning's launcher notices a dead child within 5 s and kills
    the rest; a dead rank 0 breaks the gloo connections of the others. Hanging: the others'
    collective times out (trainer.strategy.timeout, 15 s here) and the failed rank 0 stops the
    rank it launched (stop_launched_ranks)."""
    pid_dir = tmp_path / "pids"
    start = time.monotonic()
    result = train_cli(
        *TINY_LM,
        "trainer=ddp_cpu",
        "data.batch_size=8",
        "trainer.max_steps=100000",  # would run for minutes: the failure has to end it
        "test=false",
        "trainer.strategy.timeout.minutes=0",
        "+trainer.strategy.timeout.seconds=15",
        "+callbacks.kill._target_=tests.distributed_helpers.KillRank",
        f"+callbacks.kill.rank={rank}",
        "+callbacks.kill.step=3",
        f"+callbacks.kill.how={how}",
        f"+callbacks.kill.pid_dir={pid_dir}",
        cwd=tmp_path,
        timeout=150,
        check=False,
    )
    elapsed = time.monotonic() - start
    assert result.returncode != 0, result.stdout[-3000:]
    assert elapsed < 120, elapsed
    assert sorted(p.name for p in pid_dir.iterdir()) == ["rank0.pid", "rank1.pid"]
    assert result.survivors == [], "a rank outlived the job"


@pytest.mark.slow
def test_fsdp_cpu_run_equals_one_process_and_writes_one_full_checkpoint(tmp_path: Path) -> None:
    """`attnlab-train trainer=fsdp_cpu` (FSDP2, two gloo ranks, batch B each) against one process
    with batch 2B, both clipping gradients (gradient_clip_val, which Lightning's FSDP1 refused)
    and with weight decay on the matrices: after 8 steps the weights agree up to float summation
    order, the optimiser has the same groups, metrics.json the same FLOPs per token, and each
    checkpoint is one full file that the single-device tools load. Measured: 1.0e-6 max abs
    difference (tolerance 1e-5)."""
    common = [
        *TINY_LM,
        "data.train_samples_per_epoch=128",
        "trainer.max_epochs=1",
        "seed=11",
        "scheduler=constant",
        "optimizer.lr=0.003",
        "optimizer.eps=1e-6",
        "optimizer.weight_decay=0.1",
        "trainer.gradient_clip_val=0.5",
    ]
    runs = {
        "fsdp": ["trainer=fsdp_cpu", "data.batch_size=8"],
        "one_2b": ["trainer=cpu", "data.batch_size=16"],
    }
    checkpoints, metrics = {}, {}
    for name, overrides in runs.items():
        run_dir = tmp_path / name
        train_cli(*common, *overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path)
        assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
            "best.ckpt",
            "last.ckpt",
        ]
        assert (run_dir / "checkpoints" / "last.ckpt").is_file()  # not a folder of shards
        checkpoints[name] = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
        assert checkpoints[name]["global_step"] == 8, name
        metrics[name] = read_json(run_dir / "metrics.json")
    fsdp, one = checkpoints["fsdp"], checkpoints["one_2b"]
    assert metrics["fsdp"]["world_size"] == 2
    assert metrics["fsdp"]["flops_per_token"] == metrics["one_2b"]["flops_per_token"] > 0
    assert metrics["fsdp"]["parameters"] == metrics["one_2b"]["parameters"]
    assert fsdp["state_dict"].keys() == one["state_dict"].keys()
    difference = max(
        (fsdp["state_dict"][k] - one["state_dict"][k]).abs().max().item() for k in one["state_dict"]
    )
    assert difference < 1e-5

    def groups(checkpoint: dict) -> list[tuple]:
        return [
            (g["name"], g["weight_decay"], len(g["params"]))
            for g in checkpoint["optimizer_states"][0]["param_groups"]
        ]

    assert groups(fsdp) == groups(one)
    assert groups(fsdp)[0][:2] == ("decay", 0.1) and groups(fsdp)[0][2] > 0
    # attnlab-eval / attnlab-generate rebuild the module on one device from the file alone.
    _, _, module = build.load_trained_module(str(tmp_path / "fsdp" / "checkpoints" / "last.ckpt"))
    for key, value in module.state_dict().items():
        assert torch.equal(value, fsdp["state_dict"][key]), key


@pytest.mark.slow
def test_fsdp_resumes_from_its_full_checkpoint_exactly(tmp_path: Path) -> None:
    """A trainer=fsdp_cpu run resumed from its one-file checkpoint (ckpt_path) after epoch 1
    ends where an uninterrupted 2-epoch run does: the sharded model and the optimiser state
    (Adam's moments, re-sharded from the full file) are restored. Measured: identical. Adam's
    second moments are compared too: a resume that restored the weights only would fail."""
    common = [
        *TINY_LM,
        "trainer=fsdp_cpu",
        "data.batch_size=8",
        "data.train_samples_per_epoch=64",
        "test=false",
        "seed=5",
        "scheduler=constant",
        "optimizer.lr=0.003",
    ]
    train_cli(*common, "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'one'}", cwd=tmp_path)
    first = tmp_path / "one" / "checkpoints" / "last.ckpt"
    runs = {
        "resumed": [f"ckpt_path={first}"],
        "straight": [],
    }
    states = {}
    for name, overrides in runs.items():
        run_dir = tmp_path / name
        train_cli(
            *common, "trainer.max_epochs=2", *overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path
        )
        states[name] = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
        assert states[name]["global_step"] == 8, name
    resumed, straight = states["resumed"], states["straight"]
    for key, value in straight["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, rtol=0, atol=1e-6)
    moments = [s["exp_avg_sq"] for s in straight["optimizer_states"][0]["state"].values()]
    again = [s["exp_avg_sq"] for s in resumed["optimizer_states"][0]["state"].values()]
    for a, b in zip(again, moments, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="trainer=fsdp as configured runs on GPUs")
def test_fsdp_trains_on_one_gpu_in_bf16(tmp_path: Path) -> None:
    """The GPU configuration itself (bf16-mixed autocast, NCCL, bf16 gathers) for a few steps
    through the command line: it trains, clips, and writes one full checkpoint."""
    run_dir = tmp_path / "run"
    train_cli(
        *TINY_LM,
        "trainer=fsdp",
        "trainer.devices=1",
        "trainer.max_steps=6",
        "trainer.max_epochs=-1",
        "trainer.strategy.param_dtype=bfloat16",
        "trainer.strategy.reduce_dtype=float32",
        "test=false",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 6
    assert all(v.dtype == torch.float32 for v in checkpoint["state_dict"].values())
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())
