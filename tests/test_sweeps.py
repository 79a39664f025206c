"""Sweeps: Optuna searches that resume and survive failed trials, submitit launchers, W&B sweeps."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from omegaconf import OmegaConf

from attnlab.train import train
from hydra_plugins.attnlab_sweepers._optuna import trial_values
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


# --- Optuna -------------------------------------------------------------------------------


def test_optuna_config(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, ["hparams_search=optuna"])
    sweeper = cfg.hydra.sweeper
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert sweeper.study_name == cfg.task_name
    assert sweeper.storage == f"sqlite:///{tmp_path}/logs/optuna/{cfg.task_name}.db"
    assert sweeper.n_jobs == 1
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert isinstance(sweeper.sampler.seed, int)
    for key in sweeper.params:  # the search space names real config keys
        assert OmegaConf.select(cfg, key) is not None, key
    assert instantiate(sweeper).sweeper.direction == "minimize"  # optimized_mode: min

    cfg = compose_config(tmp_path, ["hparams_search=optuna", "experiment=encdec_reverse"])
    assert cfg.optimized_mode == "max"
    assert instantiate(cfg.hydra.sweeper).sweeper.direction == "maximize"


def job_return(status: JobStatus, value: Any) -> JobReturn:
    ret = JobReturn(overrides=["seed=1"], status=status)
    ret.return_value = value
    return ret


def test_trial_values() -> None:
    assert trial_values(job_return(JobStatus.COMPLETED, 1.5), 1) == ([1.5], None)
    assert trial_values(job_return(JobStatus.COMPLETED, [1, 2.0]), 2) == ([1.0, 2.0], None)
    failed = job_return(JobStatus.FAILED, RuntimeError("out of memory"))
    assert trial_values(failed, 1) == (None, "RuntimeError: out of memory")
    values, error = trial_values(job_return(JobStatus.COMPLETED, math.nan), 1)
    assert values is None and "nan" in error  # a diverged run fails its trial
    values, error = trial_values(job_return(JobStatus.COMPLETED, "x"), 1)
    assert values is None and "not a number" in error
    with pytest.raises(ValueError, match="optimized_metric"):  # the same for every trial
        trial_values(job_return(JobStatus.COMPLETED, None), 1)


def test_optuna_search_resumes_its_study(tmp_path: Path) -> None:
    """Running the same command again adds trials to the same study, with new suggestions."""
    command = ["-m", "hparams_search=optuna", *SHORT, "hydra.sweeper.n_trials=3"]
    run_cli("attnlab-train", *command, cwd=tmp_path)
    first = load_study(tmp_path / "logs").trials
    assert [t.number for t in first] == [0, 1, 2]

    run_cli("attnlab-train", *command, cwd=tmp_path)
    trials = load_study(tmp_path / "logs").trials
    assert [t.number for t in trials] == [0, 1, 2, 3, 4, 5]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # A resumed seeded sampler must not replay its first suggestions.
    assert not {str(t.params) for t in first} & {str(t.params) for t in trials[3:]}
    assert set(trials[0].params) == {"optimizer.lr", "model.dropout"}  # n_heads fixed by SHORT
    for trial in trials:
        metrics = json.loads((Path(trial.user_attrs["output_dir"]) / "metrics.json").read_text())
        assert metrics["metrics"]["val/loss"] == pytest.approx(trial.value)
        overrides = Path(trial.user_attrs["output_dir"], ".hydra", "overrides.yaml").read_text()
        assert f"optimizer.lr={trial.params['optimizer.lr']}" in overrides
    sweeps = sorted((tmp_path / "logs" / "train" / "multiruns").iterdir())
    assert len(sweeps) == 2
    best = yaml.safe_load((sweeps[1] / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(t.value for t in trials))


def test_failed_trial_does_not_stop_the_search(tmp_path: Path) -> None:
    """n_heads=3 does not divide d_model=32: those trials fail, the others complete."""
    run_cli(
        "attnlab-train",
        "-m",
        "hparams_search=optuna",
        *[arg for arg in SHORT if not arg.startswith("model.n_heads=")],
        "model.n_heads=choice(2,3)",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.seed=7",  # suggests n_heads=3, then 2
        cwd=tmp_path,
    )
    trials = load_study(tmp_path / "logs").trials
    assert {t.params["model.n_heads"] for t in trials} == {2, 3}
    for trial in trials:
        run_dir = Path(trial.user_attrs["output_dir"])
        if trial.params["model.n_heads"] == 3:
            assert trial.state == optuna.trial.TrialState.FAIL
            assert "divisible" in trial.user_attrs["error"]
            assert json.loads((run_dir / "failure.json").read_text())["status"] == "failed"
        else:
            assert trial.state == optuna.trial.TrialState.COMPLETE
            assert (run_dir / "metrics.json").is_file()


# --- submitit launchers -------------------------------------------------------------------


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
    assert WANDB_SWEEP["metric"]["name"] == cfg.optimized_metric
    goal = {"min": "minimize", "max": "maximize"}[cfg.optimized_mode]
    assert WANDB_SWEEP["metric"]["goal"] == goal


def test_wandb_sweep_metric_is_logged(tmp_path: Path) -> None:
    overrides = [  # a CSV logger here; the sweep's own settings are checked above
        arg
        for arg in agent_command(WANDB_SWEEP, SAMPLES[0])[2:]
        if not arg.startswith(("logger=", "print_config="))
    ]
    result = train(compose_config(tmp_path, [*overrides, *SHORT]))
    assert math.isfinite(result["metrics"][WANDB_SWEEP["metric"]["name"]])
