"""How a trial's Hydra job ended, told to the study: COMPLETE with its values, PRUNED (it
raised optuna.TrialPruned), or FAIL (it raised or returned NaN or nothing; the error is the
trial's user attribute `error`); and the search's results file."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.trial import TrialState

from hydra_plugins.attnlab_sweepers.study import FINISHED

log = logging.getLogger(__name__)


def is_pruned(error: BaseException) -> bool:
    # By name too: an exception that came back from a submitit process is a copy.
    return isinstance(error, optuna.TrialPruned) or type(error).__name__ == "TrialPruned"


def trial_values(
    ret: JobReturn, n_objectives: int
) -> tuple[list[float] | None, TrialState, str | None]:
    """(values, state, why) of a finished job: COMPLETE with its values, PRUNED, or FAIL."""
    if ret.status == JobStatus.FAILED:
        error = ret._return_value  # the job's exception; `return_value` would raise it
        why = f"{type(error).__name__}: {error}"
        return None, TrialState.PRUNED if is_pruned(error) else TrialState.FAIL, why
    value = ret.return_value
    if value is None:
        # The run ended before it logged optimized_metric (e.g. max_steps before the first
        # validation), or optimized_metric is unset: nothing to optimise.
        return None, TrialState.FAIL, "returned no value (optimized_metric not logged)"
    raw = list(value) if isinstance(value, list | tuple) else [value]
    if len(raw) != n_objectives:
        raise ValueError(f"{len(raw)} values returned for {n_objectives} directions: {value!r}")
    try:
        values = [float(v) for v in raw]
    except (TypeError, ValueError):
        return None, TrialState.FAIL, f"returned {value!r}, not a number"
    if any(math.isnan(v) for v in values):  # a diverged run; Optuna itself calls NaN a failure
        return None, TrialState.FAIL, f"returned {value!r}"
    return values, TrialState.COMPLETE, None


def tell(study: optuna.Study, trial: optuna.Trial, ret: JobReturn, n_objectives: int) -> TrialState:
    """Tell the study how the trial's job ended; returns the trial's state."""
    output_dir = ret.hydra_cfg and ret.hydra_cfg.hydra.runtime.get("output_dir")
    if output_dir:  # links the trial to its run directory (metrics.json, logs)
        trial.set_user_attr("output_dir", str(output_dir))
    values, state, why = trial_values(ret, n_objectives)
    where = f" (run directory {output_dir})" if output_dir else ""
    if state == TrialState.PRUNED:
        trial.set_user_attr("pruned", why)
        log.info(f"Trial {trial.number} pruned: {why}{where}")
    elif state == TrialState.FAIL:
        trial.set_user_attr("error", why)
        log.warning(f"Trial {trial.number} failed, the search goes on: {why}{where}")
    # A pruned trial's value is its last reported one (Optuna takes it from the storage).
    study.tell(trial, values, state=state)
    return state


def save_results(study: optuna.Study, directions: list[str], sweep_dir: Path) -> None:
    """optimization_results.yaml in the sweep folder: the best trial (or the Pareto front)."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        log.info(f"Study {study.study_name}: no completed trial yet")
        return
    results: dict[str, Any]
    if len(directions) < 2:
        best = study.best_trial
        results = {
            "name": "optuna",
            "best_params": best.params,
            "best_value": best.value,
            "best_trial": best.number,
            "n_trials": {s.name.lower(): len(study.get_trials(states=(s,))) for s in FINISHED},
        }
        log.info(f"Best trial {best.number}: value {best.value}, parameters {best.params}")
    else:
        front = [{"params": t.params, "values": t.values} for t in study.best_trials]
        results = {"name": "optuna", "solutions": front}
        log.info(f"Number of Pareto solutions: {len(front)}")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
