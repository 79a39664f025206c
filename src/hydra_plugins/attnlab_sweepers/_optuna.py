"""hydra-optuna-sweeper 1.2.0's sweep loop, tolerant of failed trials.

The plugin turns a job that raised (or returned NaN or None) into an exception that ends the
whole sweep, and with NaN leaves the trial RUNNING in the storage for good. A search over
learning rates diverges now and then and a large model may not fit in memory, so here such a
trial is told to Optuna as FAIL (which its samplers skip), with the error as the trial's user
attribute `error`, and the sweep goes on. The rest follows the plugin's `sweep` (pinned to
1.2.0 in pyproject.toml), whose helpers are reused.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import OmegaConf
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

# attnlab's `optimized_mode` names, beside Optuna's own.
DIRECTIONS = {"min": "minimize", "max": "maximize"}


def optuna_direction(direction: Any) -> Any:
    """`min`/`max` (attnlab's optimized_mode) as Optuna's `minimize`/`maximize`."""
    if isinstance(direction, str):
        return DIRECTIONS.get(direction, direction)
    if isinstance(direction, Sequence):
        return [optuna_direction(d) for d in direction]
    return direction


def make_sqlite_dir(storage: Any) -> None:
    """SQLite creates the database file but not its folder (logs/optuna/ on a first run)."""
    if not isinstance(storage, str) or not storage.startswith("sqlite"):
        return
    database = make_url(storage).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def trial_values(ret: JobReturn, n_objectives: int) -> tuple[list[float] | None, str | None]:
    """(values, None) for a trial that produced a usable result, else (None, why it failed)."""
    if ret.status == JobStatus.FAILED:
        error = ret._return_value  # the job's exception; `return_value` would raise it
        return None, f"{type(error).__name__}: {error}"
    value = ret.return_value
    if value is None:
        # The same for every trial: a config error, so stop rather than fail each trial.
        raise ValueError(
            "The task returned None: set optimized_metric to a metric the run logs "
            "(the value the Optuna sweeper optimises)."
        )
    raw = list(value) if isinstance(value, list | tuple) else [value]
    if len(raw) != n_objectives:
        raise ValueError(f"{len(raw)} values returned for {n_objectives} directions: {value!r}")
    try:
        values = [float(v) for v in raw]
    except (TypeError, ValueError):
        return None, f"returned {value!r}, not a number"
    if any(math.isnan(v) for v in values):  # a diverged run; Optuna itself calls NaN a failure
        return None, f"returned {value!r}"
    return values, None


class TolerantOptunaSweeperImpl(OptunaSweeperImpl):
    def __init__(self, sampler: Any, direction: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(sampler, optuna_direction(direction), *args, **kwargs)

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None
        assert self.launcher is not None
        self._process_searchspace_config()
        params_conf = [*self._parse_sweeper_params_config(), *arguments]
        search_space, fixed_params = create_params_from_overrides(params_conf)

        is_grid_sampler = (
            isinstance(self.sampler, functools.partial)
            and self.sampler.func == optuna.samplers.GridSampler
        )
        if is_grid_sampler:
            grid = {
                name: self._to_grid_sampler_choices(distribution)
                for name, distribution in search_space.items()
            }
            self.sampler = self.sampler(grid)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in grid.values()))
            log.info(f"Updating num of trials to {self.n_trials} due to using GridSampler.")

        for name in fixed_params:  # a command-line value wins over the configured range
            search_space.pop(name, None)

        directions = self._get_directions()
        make_sqlite_dir(self.storage)
        logging.getLogger("alembic").setLevel(logging.WARNING)  # its setup chatter at INFO
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=self.sampler,
            directions=directions,
            load_if_exists=True,
        )
        resumed = len(study.trials)
        if resumed and not is_grid_sampler:
            # A seeded sampler would repeat the suggestions it made before the restart.
            self.sampler.reseed_rng()
        log.info(f"Study name: {study.study_name} ({resumed} trials so far)")
        log.info(f"Storage: {self.storage}")
        log.info(f"Sampler: {type(self.sampler).__name__}")
        log.info(f"Directions: {directions}")

        completed = 0
        n_trials_to_go = self.n_trials
        while n_trials_to_go > 0:
            batch_size = min(n_trials_to_go, self.n_jobs)
            trials = [study.ask() for _ in range(batch_size)]
            overrides = self._configure_trials(trials, search_space, fixed_params)
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            for trial, ret in zip(trials, returns, strict=True):
                output_dir = ret.hydra_cfg and ret.hydra_cfg.hydra.runtime.get("output_dir")
                if output_dir:  # links the trial to its run directory (metrics.json, logs)
                    trial.set_user_attr("output_dir", str(output_dir))
                try:
                    values, error = trial_values(ret, len(directions))
                except ValueError:
                    study.tell(trial, state=TrialState.FAIL)  # not left RUNNING in the storage
                    raise
                if error is not None:
                    log.warning(
                        f"Trial {trial.number} failed, the search goes on: {error}"
                        + (f" (run directory {output_dir})" if output_dir else "")
                    )
                    trial.set_user_attr("error", error)
                    study.tell(trial, state=TrialState.FAIL)
                    continue
                try:
                    study.tell(trial, values)
                except RuntimeError as e:
                    # GridSampler stops the study once the grid is done (as in the plugin).
                    if not (is_grid_sampler and "Study.stop" in str(e)):
                        raise
                completed += 1
            n_trials_to_go -= batch_size

        if completed == 0:
            raise RuntimeError(
                f"All {self.n_trials} trials of this sweep failed; their errors are in the log "
                f"above and in each run's failure.json under {self.config.hydra.sweep.dir}"
            )
        self._save_results(study, directions)

    def _save_results(self, study: optuna.Study, directions: list[str]) -> None:
        """optimization_results.yaml in the sweep folder, as the plugin writes it."""
        results: dict[str, Any]
        if len(directions) < 2:
            best = study.best_trial
            results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
            log.info(f"Best parameters: {best.params}")
            log.info(f"Best value: {best.value}")
        else:
            front = [{"params": t.params, "values": t.values} for t in study.best_trials]
            results = {"name": "optuna", "solutions": front}
            log.info(f"Number of Pareto solutions: {len(front)}")
        OmegaConf.save(
            OmegaConf.create(results), f"{self.config.hydra.sweep.dir}/optimization_results.yaml"
        )
