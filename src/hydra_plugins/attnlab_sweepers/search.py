"""The Optuna search loop: ask a batch of trials, launch them as Hydra jobs, tell the results.

- The search space is Hydra's sweep syntax (`params`, then the command line, later wins):
  interval, tag(log, interval), range and choice become Optuna distributions; a plain value
  takes its key out of the search and goes to every trial unchanged.
- The study lives in `storage` and is loaded if it exists: `n_trials` counts the trials the
  study has finished (COMPLETE, PRUNED, FAIL), so re-running the command after a crash runs
  only the rest, and several processes running it against one storage share the work.
- A trial that raised or returned NaN is told as FAIL (samplers skip it) with the error as its
  user attribute `error`, one that raised optuna.TrialPruned (the pruning callback) as PRUNED;
  the search goes on. A sweep interrupted in this process (Ctrl-C) fails its trials in flight.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig
from optuna.trial import TrialState

from hydra_plugins.attnlab_sweepers.search_space import SearchSpace, search_space
from hydra_plugins.attnlab_sweepers.study import (
    build_pruner,
    directions_of,
    n_finished,
    open_storage,
)
from hydra_plugins.attnlab_sweepers.trials import save_results, tell

log = logging.getLogger(__name__)


class Sweep(Protocol):
    """What the search reads from the sweeper (optuna_sweeper.OptunaSweeper) once set up;
    `job_idx` it advances, so that each launch numbers its jobs after the last."""

    config: DictConfig | None
    launcher: Any
    params: Any
    direction: Any
    sampler: Any
    pruner: Any
    storage: str | None
    study_name: str | None
    n_trials: int
    n_jobs: int
    job_idx: int


def run_search(sweeper: Sweep, arguments: list[str]) -> None:
    """Ask, launch and tell batches of `n_jobs` trials until the study has `n_trials` finished;
    then write optimization_results.yaml in the sweep folder."""
    assert sweeper.config is not None and sweeper.launcher is not None
    space = search_space(sweeper.params, arguments)
    directions = directions_of(sweeper.direction)
    study = open_study(sweeper, directions)
    log.info("Search space: " + ", ".join(f"{k}: {d}" for k, d in space.distributions.items()))
    completed = failed = 0
    while (to_go := sweeper.n_trials - n_finished(study)) > 0:
        states = run_batch(sweeper, study, space, min(to_go, sweeper.n_jobs), len(directions))
        completed += states.count(TrialState.COMPLETE)
        failed += states.count(TrialState.FAIL)
    if completed == 0 and failed and not study.get_trials(states=(TrialState.COMPLETE,)):
        raise RuntimeError(
            f"Every trial of study {study.study_name} failed; their errors are in the log above "
            f"and in each run's failure.json under {sweeper.config.hydra.sweep.dir}"
        )
    save_results(study, directions, Path(sweeper.config.hydra.sweep.dir))


def open_study(sweeper: Sweep, directions: list[str]) -> optuna.Study:
    """The sweeper's study, created or loaded from its storage."""
    sampler = instantiate(sweeper.sampler) if sweeper.sampler else None
    study = optuna.create_study(
        study_name=sweeper.study_name,
        storage=open_storage(sweeper.storage),
        sampler=sampler,
        pruner=build_pruner(sweeper.pruner),
        directions=directions,
        load_if_exists=True,
    )
    if study.trials and hasattr(study.sampler, "reseed_rng"):
        # A seeded sampler would repeat the suggestions it made before the restart.
        study.sampler.reseed_rng()
    log.info(
        f"Study {study.study_name}: {n_finished(study)} of {sweeper.n_trials} trials finished "
        f"so far; storage {sweeper.storage}; sampler {type(study.sampler).__name__}, "
        f"pruner {type(study.pruner).__name__}, directions {directions}"
    )
    return study


def run_batch(
    sweeper: Sweep, study: optuna.Study, space: SearchSpace, n: int, n_objectives: int
) -> list[TrialState]:
    """Ask `n` trials, launch them as one batch of jobs, tell each how it ended."""
    trials = [study.ask(fixed_distributions=space.distributions) for _ in range(n)]
    told: dict[int, TrialState] = {}
    try:
        returns = sweeper.launcher.launch(
            [space.overrides(trial.params, trial.number) for trial in trials],
            initial_job_idx=sweeper.job_idx,
        )
        sweeper.job_idx += len(returns)
        for trial, ret in zip(trials, returns, strict=True):
            told[trial.number] = tell(study, trial, ret, n_objectives)
    except BaseException:  # Ctrl-C, a launcher's error: no trial left RUNNING for good
        for trial in trials:
            if trial.number not in told:
                study.tell(trial, state=TrialState.FAIL)
        raise
    return list(told.values())
