"""Sweeps: Optuna searches that resume and survive failed trials, submitit launchers, W&B sweeps."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
import torch
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from attnlab.callbacks.pruning import OptunaPruning
from attnlab.run.train import train
from hydra_plugins.attnlab_sweepers.optuna_sweeper import OptunaSweeper
from hydra_plugins.attnlab_sweepers.search_space import override_value, search_space
from hydra_plugins.attnlab_sweepers.study import build_pruner, directions_of
from hydra_plugins.attnlab_sweepers.trials import trial_values
from tests.conftest import ROOT, TINY_SETUP, compose_config, run_cli

SHORT = [
    *TINY_SETUP,
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
]


def load_study(log_dir: Path, name: str = "train") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{log_dir}/optuna/{name}.db")


def enqueued_study(log_dir: Path, *params: dict[str, Any], name: str = "train") -> None:
    """The study a search will resume, with these trials first in line (a fixed order where a
    test needs one; Optuna's suggestions change between its releases)."""
    (log_dir / "optuna").mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{log_dir}/optuna/{name}.db"
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    for values in params:
        study.enqueue_trial(values)


# --- Optuna: configuration and search space -------------------------------------------------


def test_optuna_config(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, ["hparams_search=optuna"])
    sweeper = cfg.hydra.sweeper
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert sweeper._target_ == f"{OptunaSweeper.__module__}.OptunaSweeper"
    assert sweeper.study_name == cfg.task_name
    assert sweeper.storage == f"sqlite:///{tmp_path}/logs/optuna/{cfg.task_name}.db"
    assert sweeper.n_jobs == 1
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert isinstance(sweeper.sampler.seed, int)
    assert isinstance(instantiate(sweeper.pruner), optuna.pruners.MedianPruner)
    assert cfg.callbacks.optuna_pruning.monitor == cfg.optimized_metric
    for key in sweeper.params:  # the search space names real config keys
        assert OmegaConf.select(cfg, key) is not None, key
    assert directions_of(sweeper.direction) == ["minimize"]  # optimized_mode: min

    cfg = compose_config(tmp_path, ["hparams_search=optuna", "experiment=encdec_reverse"])
    assert cfg.optimized_mode == "max"
    assert directions_of(cfg.hydra.sweeper.direction) == ["maximize"]


SWEEPER_CONF = ROOT / "conf" / "hydra" / "sweeper"


def test_pruner_and_sampler_options(tmp_path: Path) -> None:
    """Every option of hydra/sweeper/{pruner,sampler} builds its Optuna object; the groups are
    chosen on the command line (test_configs.py counts these files as covered here)."""
    bases = {"pruner": optuna.pruners.BasePruner, "sampler": optuna.samplers.BaseSampler}
    for group, base in bases.items():
        for path in sorted((SWEEPER_CONF / group).glob("*.yaml")):
            built = instantiate(OmegaConf.load(path))
            assert isinstance(built, base), path
    assert type(build_pruner(None)) is optuna.pruners.NopPruner
    overrides = ["hparams_search=optuna", "hydra/sweeper/pruner=hyperband"]
    cfg = compose_config(tmp_path, [*overrides, "hydra/sweeper/sampler=random"])
    assert type(build_pruner(cfg.hydra.sweeper.pruner)) is optuna.pruners.HyperbandPruner
    assert cfg.hydra.sweeper.sampler == {"_target_": "optuna.samplers.RandomSampler", "seed": 1234}


def test_search_space_from_params_and_command_line() -> None:
    params = {
        "optimizer.lr": "tag(log, interval(1e-4, 3e-3))",
        "model.dropout": "interval(0.0, 0.3)",
        "model.n_heads": "choice(2, 4, 8)",
        "model.d_ff": "choice(64, 128)",
    }
    arguments = [
        "model.n_heads=4",  # a plain value takes the key out of the search
        "model.d_ff=range(32, 129, 32)",  # a sweep expression replaces the configured one
        "data=reverse",
        "+model.pos=choice(learned,rope)",
    ]
    space = search_space(params, arguments)
    assert space.distributions.keys() == {
        "optimizer.lr",
        "model.dropout",
        "model.d_ff",
        "model.pos",
    }
    assert space.distributions["optimizer.lr"] == FloatDistribution(1e-4, 3e-3, log=True)
    assert space.distributions["model.dropout"] == FloatDistribution(0.0, 0.3)
    assert space.distributions["model.d_ff"] == IntDistribution(
        32, 128, step=32
    )  # range() leaves 129 out
    assert space.distributions["model.pos"] == CategoricalDistribution(["learned", "rope"])
    assert space.fixed == ["model.n_heads=4", "data=reverse"]
    # A trial's overrides: the fixed ones, its values (an added key keeps its +), its number.
    overrides = space.overrides({"model.pos": "rope", "optimizer.lr": 1e-3}, 7)
    assert overrides == [
        "model.n_heads=4",
        "data=reverse",
        "+model.pos=rope",
        "optimizer.lr=0.001",
        "hydra.sweeper.trial_number=7",
    ]
    # A choice of lists has no Optuna distribution: one line naming the key.
    with pytest.raises(ValueError, match=r"model\.x: a choice"):
        search_space({}, ["model.x=choice([1,2],[3])"])


def test_sampled_values_read_back_as_sampled() -> None:
    """Each sampled value, written as an override, parses back to itself."""
    rng = random.Random()
    values = [
        rng.uniform(-1e3, 1e3),
        rng.lognormvariate(-9, 3),
        rng.randint(-100, 100),
        rng.choice([True, False]),
        None,
        "rope",
        "a b,c'd" + str(rng.random()),
        "",
    ]
    parser = OverridesParser.create()
    for value in values:
        (override,) = parser.parse_overrides([f"key={override_value(value)}"])
        assert override.value() == value, value


def job_return(status: JobStatus, value: Any) -> JobReturn:
    ret = JobReturn(overrides=["seed=1"], status=status)
    ret.return_value = value
    return ret


def test_trial_values() -> None:
    complete, fail, pruned = TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED
    assert trial_values(job_return(JobStatus.COMPLETED, 1.5), 1) == ([1.5], complete, None)
    assert trial_values(job_return(JobStatus.COMPLETED, [1, 2.0]), 2)[:2] == ([1.0, 2.0], complete)
    failed = job_return(JobStatus.FAILED, RuntimeError("out of memory"))
    assert trial_values(failed, 1) == (None, fail, "RuntimeError: out of memory")
    stopped = job_return(JobStatus.FAILED, optuna.TrialPruned("pruned at step 4"))
    assert trial_values(stopped, 1) == (None, pruned, "TrialPruned: pruned at step 4")
    values, state, error = trial_values(job_return(JobStatus.COMPLETED, math.nan), 1)
    assert values is None and state == fail and "nan" in error  # a diverged run fails its trial
    values, state, error = trial_values(job_return(JobStatus.COMPLETED, "x"), 1)
    assert state == fail and "not a number" in error
    # A run that ended before it logged optimized_metric has nothing to tell.
    assert trial_values(job_return(JobStatus.COMPLETED, None), 1)[1] == fail
    with pytest.raises(ValueError, match="2 directions"):
        trial_values(job_return(JobStatus.COMPLETED, 1.0), 2)


# --- Optuna: the pruning callback ------------------------------------------------------------


def validation(step: int, value: float | None, sanity: bool = False) -> SimpleNamespace:
    """What OptunaPruning reads of a Trainer at the end of a validation."""
    metrics = {} if value is None else {"val/loss": torch.tensor(value)}
    return SimpleNamespace(
        sanity_checking=sanity, callback_metrics=metrics, global_step=step, world_size=1
    )


def test_pruning_callback_reports_and_prunes() -> None:
    """Reports every validation at its global step; raises TrialPruned on the pruner's word."""
    upper = random.uniform(1.0, 5.0)
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=upper))
    callback = OptunaPruning("val/loss", trial=study.ask())
    callback.on_validation_end(validation(0, upper * 9, sanity=True), None)  # not reported
    below = [upper * random.uniform(0.1, 0.9) for _ in range(3)]
    for step, value in zip([10, 20, 30], below, strict=True):
        callback.on_validation_end(validation(step, value), None)
    callback.on_validation_end(validation(35, None), None)  # not logged at this validation
    with pytest.raises(optuna.TrialPruned, match="step 40"):
        callback.on_validation_end(validation(40, upper * 2), None)
    reported = study.trials[0].intermediate_values
    assert reported == pytest.approx({10: below[0], 20: below[1], 30: below[2], 40: upper * 2})


def test_pruning_callback_is_inert_outside_a_trial(tmp_path: Path) -> None:
    compose_config(tmp_path, ["hparams_search=optuna"])  # no trial_number: not a trial
    callback = OptunaPruning("val/loss")
    callback.setup(SimpleNamespace(is_global_zero=True), None, "fit")
    assert callback.trial is None
    callback.on_validation_end(validation(10, 1e9), None)  # neither reports nor prunes


# --- Optuna: searches ---------------------------------------------------------------------


@pytest.mark.slow  # two Optuna searches (~55 s): default-suite time (issue 28)
def test_optuna_search_resumes_its_study(tmp_path: Path) -> None:
    """The same command with a larger n_trials continues the study, with new suggestions."""
    command = ["-m", "hparams_search=optuna", *SHORT]
    run_cli("attnlab-train", *command, "hydra.sweeper.n_trials=2", cwd=tmp_path)
    first = load_study(tmp_path / "logs").trials
    assert [t.number for t in first] == [0, 1]

    run_cli("attnlab-train", *command, "hydra.sweeper.n_trials=3", cwd=tmp_path)
    trials = load_study(tmp_path / "logs").trials
    assert [t.number for t in trials] == [0, 1, 2]  # n_trials counts the finished ones
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # A resumed seeded sampler must not replay its first suggestions.
    assert str(trials[2].params) not in {str(t.params) for t in first}
    assert set(trials[0].params) == {"optimizer.lr", "model.dropout"}  # n_heads fixed by SHORT
    for trial in trials:
        run_dir = Path(trial.user_attrs["output_dir"])
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["metrics"]["val/loss"] == pytest.approx(trial.value)
        assert list(trial.intermediate_values.values()) == pytest.approx([trial.value])
        overrides = (run_dir / ".hydra" / "overrides.yaml").read_text()
        assert f"optimizer.lr={trial.params['optimizer.lr']}" in overrides
        assert "trial_number" not in overrides  # the sweeper's own override is Hydra's
    sweeps = sorted((tmp_path / "logs" / "train" / "multiruns").iterdir())
    assert len(sweeps) == 2
    best = yaml.safe_load((sweeps[1] / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(t.value for t in trials))


def test_failed_trial_does_not_stop_the_search(tmp_path: Path) -> None:
    """n_heads=3 does not divide d_model=32: that trial fails, the next one completes."""
    enqueued_study(tmp_path / "logs", {"model.n_heads": 3}, {"model.n_heads": 2})
    run_cli(
        "attnlab-train",
        "-m",
        "hparams_search=optuna",
        *[arg for arg in SHORT if not arg.startswith("model.n_heads=")],
        "model.n_heads=choice(2,3)",
        "hydra.sweeper.n_trials=2",
        cwd=tmp_path,
    )
    trials = load_study(tmp_path / "logs").trials
    assert [t.params["model.n_heads"] for t in trials] == [3, 2]
    failed, done = trials
    assert failed.state == TrialState.FAIL
    assert "divisible" in failed.user_attrs["error"]
    run_dir = Path(failed.user_attrs["output_dir"])
    assert json.loads((run_dir / "failure.json").read_text())["status"] == "failed"
    assert done.state == TrialState.COMPLETE
    assert (Path(done.user_attrs["output_dir"]) / "metrics.json").is_file()


# Two validations per trial (steps 2 and 4); the median pruner prunes from the second trial on.
PRUNED_SEARCH = [
    "-m",
    "hparams_search=optuna",
    *[arg for arg in SHORT if not arg.startswith("trainer.limit_train_batches")],
    "trainer.limit_train_batches=4",
    "trainer.val_check_interval=2",
    "model.dropout=0.0",
    "optimizer.lr=tag(log, interval(1e-4, 100.0))",
    "hydra.sweeper.pruner.n_startup_trials=1",
    "hydra.sweeper.n_trials=3",
]
GOOD_LR, BAD_LR = 3e-3, 50.0  # a run with lr=50 is far worse than the first at its validation


def check_pruned_search(log_dir: Path, n_trials: int = 3) -> None:
    trials = load_study(log_dir).trials
    states = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    assert [t.state for t in trials] == states[:n_trials]
    good, pruned = trials[:2]
    assert sorted(good.intermediate_values) == [2, 4]
    assert sorted(pruned.intermediate_values) == [2]  # stopped at its first validation
    assert "step 2" in pruned.user_attrs["pruned"]
    run_dir = Path(pruned.user_attrs["output_dir"])
    assert not (run_dir / "metrics.json").exists()
    assert "TrialPruned" in json.loads((run_dir / "failure.json").read_text())["error"]


@pytest.mark.slow
def test_pruned_trial_is_recorded_and_the_search_goes_on(tmp_path: Path) -> None:
    enqueued_study(
        tmp_path / "logs",
        {"optimizer.lr": GOOD_LR},
        {"optimizer.lr": BAD_LR},
        {"optimizer.lr": GOOD_LR},
    )
    run_cli("attnlab-train", *PRUNED_SEARCH, cwd=tmp_path)
    check_pruned_search(tmp_path / "logs")
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["n_trials"] == {"complete": 2, "pruned": 1, "fail": 0}


@pytest.mark.slow
def test_pruning_in_submitit_processes(tmp_path: Path) -> None:
    """Each trial runs in its own process and reaches the study through its storage (two
    trials: the search going on after a pruned one is the test above)."""
    enqueued_study(tmp_path / "logs", {"optimizer.lr": GOOD_LR}, {"optimizer.lr": BAD_LR})
    launcher = ["hydra/launcher=submitit_local", "hydra.sweeper.n_trials=2"]
    run_cli("attnlab-train", *PRUNED_SEARCH, *launcher, cwd=tmp_path)
    check_pruned_search(tmp_path / "logs", n_trials=2)
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    assert list(sweep.glob(".submitit/*/*_0_log.out"))  # it went through submitit


@pytest.mark.slow
def test_killed_search_resumes(tmp_path: Path) -> None:
    """A search killed (SIGKILL) during a trial continues where it was when run again: the
    trials it finished count toward n_trials and are kept."""
    command = ["-m", "hparams_search=optuna", *SHORT, "hydra.sweeper.n_trials=3"]
    executable = Path(sys.executable).parent / "attnlab-train"
    env = {**os.environ, "WANDB_MODE": "offline"}
    process = subprocess.Popen(
        [str(executable), *command],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    sweeps = tmp_path / "logs" / "train" / "multiruns"
    try:
        finished: list[optuna.trial.FrozenTrial] = []
        for _ in range(1200):  # until its first trial is told (a guard of 10 minutes)
            if process.poll() is not None:
                break
            # The study exists once a trial has run: it is created before the first launch.
            if list(sweeps.glob("*/0/metrics.json")):
                finished = load_study(tmp_path / "logs").get_trials(states=(TrialState.COMPLETE,))
                if finished:
                    break
            time.sleep(0.5)
        assert finished, "the search ended or stalled before its first trial"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    before = load_study(tmp_path / "logs").get_trials(states=(TrialState.COMPLETE,))

    run_cli("attnlab-train", *command, cwd=tmp_path)
    study = load_study(tmp_path / "logs")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 3
    assert {t.number for t in before} <= {t.number for t in complete}  # kept
    # Only a trial killed mid-run can be left RUNNING; nothing else is in the study.
    assert len(study.trials) - len(complete) == len(study.get_trials(states=(TrialState.RUNNING,)))
    assert len(study.trials) <= 4


# --- submitit launchers -------------------------------------------------------------------


@pytest.mark.slow  # a submitit-launched multirun (~60 s): default-suite time (issue 28)
def test_submitit_local_runs_a_multirun(tmp_path: Path) -> None:
    """Each job runs in its own process; the default sweep folder (no hydra.sweep.dir)."""
    run_cli(
        "attnlab-train",
        "-m",
        "hydra/launcher=submitit_local",
        "seed=1,2",
        *SHORT,
        cwd=tmp_path,
    )
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    assert sorted(p.parent.name for p in sweep.glob("*/metrics.json")) == ["0", "1"]
    assert list(sweep.glob(".submitit/*/*_0_log.out"))  # it went through submitit


def test_slurm_launcher_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """hydra/launcher=slurm asks SLURM for what the trainer uses; the sbatch script shows it."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    cfg = compose_config(
        tmp_path,
        [
            "hydra/launcher=slurm",
            "trainer=ddp",
            "trainer.devices=4",
            "trainer.num_nodes=2",
            "hydra.launcher.partition=gpu",
            "task_name=search",
        ],
    )
    launcher_cfg = cfg.hydra.launcher
    assert launcher_cfg._target_ == f"{SlurmLauncher.__module__}.SlurmLauncher"
    assert launcher_cfg.gpus_per_node == launcher_cfg.tasks_per_node == 4
    assert launcher_cfg.nodes == 2
    assert launcher_cfg.timeout_min == 240
    assert launcher_cfg.name == "search"
    assert launcher_cfg.submitit_folder.startswith(str(cfg.hydra.sweep.dir))

    # The plugin's own launch, up to the submission: no srun or sbatch here.
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))
    submitted = []
    monkeypatch.setattr(
        submitit.AutoExecutor, "map_array", lambda self, *args: submitted.append(self) or []
    )
    launcher = instantiate(launcher_cfg)
    launcher.setup(hydra_context=None, task_function=print, config=cfg)
    assert launcher.launch([["seed=1"], ["seed=2"]], initial_job_idx=0) == []
    sbatch = submitted[0]._executor._make_submission_file_text("python -m x", "uid")
    for line in [
        "--gpus-per-node=4",
        "--ntasks-per-node=4",
        "--nodes=2",
        "--partition=gpu",
        "--time=240",
        "--job-name=search",
    ]:
        assert f"#SBATCH {line}" in sbatch


@pytest.mark.parametrize("name", ["submitit_local", "submitit_slurm"])
def test_plugin_launcher_configs_compose(tmp_path: Path, name: str) -> None:
    cfg = compose_config(tmp_path, [f"hydra/launcher={name}"])
    assert cfg.hydra.launcher._target_.startswith("hydra_plugins.hydra_submitit_launcher.")


# --- W&B sweep ----------------------------------------------------------------------------

WANDB_SWEEP = yaml.safe_load((ROOT / "scripts" / "wandb_sweep.yaml").read_text())


def agent_command(sweep: dict[str, Any], values: dict[str, Any]) -> list[str]:
    """The command line a W&B agent runs for these values (as wandb.wandb_agent.Agent does)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    macros = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    macros |= {"program": [sweep["program"]], "env": ["/usr/bin/env"], "interpreter": ["python"]}
    command: list[str] = []
    for chunk in map(str, create_sweep_command(list(sweep["command"]))):
        if chunk.startswith("${") and chunk.endswith("}"):
            command += macros.get(chunk[2:-1]) or []
        else:
            command.append(chunk)
    return command


def sample(parameters: dict[str, Any], i: int) -> dict[str, Any]:
    """The i-th of a few value sets: categorical values in turn, distributions' ends and middle."""
    values = {}
    for key, spec in parameters.items():
        if "values" in spec:
            values[key] = spec["values"][i % len(spec["values"])]
        else:
            low, high = spec["min"], spec["max"]
            middle = math.sqrt(low * high) if "log" in spec["distribution"] else (low + high) / 2
            values[key] = [low, high, middle][i % 3]
    return values


SAMPLES = [sample(WANDB_SWEEP["parameters"], i) for i in range(4)]


@pytest.mark.parametrize("values", SAMPLES, ids=[str(i) for i in range(len(SAMPLES))])
def test_wandb_sweep_command_composes(tmp_path: Path, values: dict[str, Any]) -> None:
    command = agent_command(WANDB_SWEEP, values)
    assert command[:2] == ["/usr/bin/env", "attnlab-train"]
    cfg = compose_config(tmp_path, command[2:])
    for key, value in values.items():
        expected = pytest.approx(value) if isinstance(value, float) else value
        assert OmegaConf.select(cfg, key) == expected, key
    assert cfg.hydra.runtime.choices.logger == "wandb"
    assert WANDB_SWEEP["metric"]["name"] == f"best/{cfg.optimized_metric}"
    goal = {"min": "minimize", "max": "maximize"}[cfg.optimized_mode]
    assert WANDB_SWEEP["metric"]["goal"] == goal


def test_wandb_sweep_metric_is_the_best_validation_value(tmp_path: Path, monkeypatch) -> None:
    """The sweep's metric is in the W&B run's summary (what a sweep reads) and holds the best
    validation value, not the last: a run whose validation loss rises after its first check."""
    from tests.test_wandb import read_records

    monkeypatch.setenv("WANDB_MODE", "offline")
    overrides = [*agent_command(WANDB_SWEEP, SAMPLES[0])[2:], *SHORT]
    overrides += ["trainer.limit_train_batches=6", "trainer.val_check_interval=2"]
    overrides += ["optimizer.lr=0.05", "scheduler=constant", "seed=1"]  # too high: it rises
    train(compose_config(tmp_path, overrides))
    (log,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    history, summary = [], {}
    for record in read_records(log):
        kind = record.WhichOneof("record_type")
        items = {"history": record.history.item, "summary": record.summary.update}.get(kind, [])
        values = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
        history += [values["val/loss"]] if kind == "history" and "val/loss" in values else []
        summary |= values if kind == "summary" else {}
    assert len(history) == 3 and history[-1] != min(history), history  # the case to tell apart
    assert summary[WANDB_SWEEP["metric"]["name"]] == pytest.approx(min(history))


@pytest.mark.slow
def test_workers_share_one_study(tmp_path: Path) -> None:
    """Two processes running the same search (each its own sampler seed) against one SQLite
    study finish n_trials together, each stopping one batch past it at most."""
    command = ["-m", "hparams_search=optuna", *SHORT, "hydra.sweeper.n_trials=4"]
    executable = Path(sys.executable).parent / "attnlab-train"
    env = {**os.environ, "WANDB_MODE": "offline"}
    logs = [tmp_path / f"worker{seed}.log" for seed in (1, 2)]
    workers = [
        subprocess.Popen(
            [str(executable), *command, f"hydra.sweeper.sampler.seed={seed}"],
            cwd=tmp_path,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        for seed, log in zip((1, 2), logs, strict=True)
    ]
    for worker, log in zip(workers, logs, strict=True):
        assert worker.wait(timeout=900) == 0, log.read_text()[-3000:]
    trials = load_study(tmp_path / "logs").trials
    assert 4 <= len(trials) <= 5
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.number for t in trials}) == len(trials)
    sweeps = {Path(t.user_attrs["output_dir"]).parent for t in trials}
    assert sweeps <= set((tmp_path / "logs" / "train" / "multiruns").iterdir())
