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
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from filelock import FileLock
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
)
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from hydra_plugins.attnlab_sweepers.optuna_sweeper import OptunaSweeper

log = logging.getLogger(__name__)

# attnlab's `optimized_mode` names, beside Optuna's own.
DIRECTIONS = {"min": "minimize", "max": "maximize"}
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# The override each trial's job gets: the pruning callback finds its trial with it.
TRIAL_KEY = "hydra.sweeper.trial_number"
# SQLite waits this long for a lock that another worker holds (its default is 5 s).
SQLITE_TIMEOUT_S = 60


def optuna_direction(direction: Any) -> Any:
    """`min`/`max` (attnlab's optimized_mode) as Optuna's `minimize`/`maximize`."""
    if isinstance(direction, str):
        return DIRECTIONS.get(direction, direction)
    if isinstance(direction, Sequence):
        return [optuna_direction(d) for d in direction]
    return direction


def directions_of(direction: Any) -> list[str]:
    directions = optuna_direction(
        OmegaConf.to_object(direction) if OmegaConf.is_config(direction) else direction
    )
    return directions if isinstance(directions, list) else [directions]


# --- search space ------------------------------------------------------------------------


def distribution(override: Override) -> BaseDistribution | None:
    """The Optuna distribution of a sweep override; None for a plain value."""
    if not override.is_sweep_override():
        return None
    value = override.value()
    key = override.get_key_element()
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep)
        start, stop, step = value.start, value.stop, value.step
        if not value.shuffle and all(isinstance(v, int) for v in (start, stop, step)) and step > 0:
            last = start + step * ((stop - 1 - start) // step)  # range() leaves `stop` out
            return IntDistribution(start, last, step=step)
    choices = list(override.sweep_iterator())
    assert isinstance(value, ChoiceSweep | RangeSweep)
    bad = [c for c in choices if not isinstance(c, str | int | float | bool | type(None))]
    if bad:
        raise ValueError(
            f"{key}: a choice in an Optuna search is a number, string, boolean or null, "
            f"not {bad[0]!r}"
        )
    return CategoricalDistribution(choices)


@dataclass
class SearchSpace:
    """What a search samples and what every trial gets unchanged."""

    distributions: dict[str, BaseDistribution]  # config key -> Optuna distribution
    fixed: list[str]  # overrides given to every trial, as typed
    prefixes: dict[str, str]  # `+`/`++` of sampled keys the command line adds to the config

    def overrides(self, params: Mapping[str, Any], trial_number: int) -> list[str]:
        """A trial's overrides: the fixed ones, its sampled values, and its number (for the
        pruning callback; a Hydra override, so not among the run's own overrides)."""
        sampled = [
            f"{self.prefixes.get(key, '')}{key}={override_value(value)}"
            for key, value in params.items()
        ]
        return [*self.fixed, *sampled, f"{TRIAL_KEY}={trial_number}"]


def search_space(params: Mapping[str, Any] | None, arguments: Sequence[str]) -> SearchSpace:
    """The search space of `params` (config key -> sweep expression) and the command line's
    overrides: for a key given twice the later wins, and a plain value takes the key out of
    the search."""
    lines = [f"{key}={value}" for key, value in (params or {}).items()]
    parsed = OverridesParser.create().parse_overrides([*lines, *arguments])
    last: dict[str, Override] = {}
    for override in parsed:
        key = override.get_key_element().lstrip("+~")
        last.pop(key, None)  # re-inserted at the end: the command line's order
        last[key] = override
    space = SearchSpace({}, [], {})
    for key, override in last.items():
        dist = distribution(override)
        if dist is None:
            space.fixed.append(override.input_line)
            continue
        space.distributions[key] = dist
        if override.is_force_add() or override.is_add():
            space.prefixes[key] = "++" if override.is_force_add() else "+"
    return space


_PLAIN = re.compile(r"[\w.\-+/:@]*")


def override_value(value: Any) -> str:
    """A sampled value as Hydra reads it back: null, true/false, numbers, quoted strings."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and not (_PLAIN.fullmatch(value) and value):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)


# --- results -------------------------------------------------------------------------------


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


# --- the study -----------------------------------------------------------------------------


def sqlite_file(url: str) -> Path | None:
    """The database file of an SQLite URL; None for another database or an in-memory one."""
    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def open_storage(url: str | None) -> optuna.storages.BaseStorage | None:
    """The study's storage. SQLite: its folder created (logs/optuna/ on a first run), the
    tables created by one worker at a time, and a lock held by another worker waited for."""
    if url is None:
        return None
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its setup chatter at INFO
    database = sqlite_file(url)
    if database is None:
        return optuna.storages.RDBStorage(url)
    database.parent.mkdir(parents=True, exist_ok=True)
    engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    with FileLock(f"{database}.lock"):
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


def build_pruner(config: Any) -> optuna.pruners.BasePruner:
    """`hydra.sweeper.pruner`: a config with `_target_`, or null for none."""
    if not config or not config.get("_target_"):
        return optuna.pruners.NopPruner()
    return instantiate(config)


def n_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def run_search(sweeper: OptunaSweeper, arguments: list[str]) -> None:
    assert sweeper.config is not None and sweeper.launcher is not None
    space = search_space(sweeper.params, arguments)
    directions = directions_of(sweeper.direction)
    sampler = instantiate(sweeper.sampler) if sweeper.sampler else None
    study = optuna.create_study(
        study_name=sweeper.study_name,
        storage=open_storage(sweeper.storage),
        sampler=sampler,
        pruner=build_pruner(sweeper.pruner),
        directions=directions,
        load_if_exists=True,
    )
    earlier = len(study.trials)
    if earlier and hasattr(study.sampler, "reseed_rng"):
        # A seeded sampler would repeat the suggestions it made before the restart.
        study.sampler.reseed_rng()
    log.info(
        f"Study {study.study_name}: {n_finished(study)} of {sweeper.n_trials} trials finished "
        f"so far; storage {sweeper.storage}; sampler {type(study.sampler).__name__}, "
        f"pruner {type(study.pruner).__name__}, directions {directions}"
    )
    log.info("Search space: " + ", ".join(f"{k}: {d}" for k, d in space.distributions.items()))

    completed = failed = 0
    while (to_go := sweeper.n_trials - n_finished(study)) > 0:
        trials = [
            study.ask(fixed_distributions=space.distributions)
            for _ in range(min(to_go, sweeper.n_jobs))
        ]
        told: set[int] = set()
        try:
            returns = sweeper.launcher.launch(
                [space.overrides(trial.params, trial.number) for trial in trials],
                initial_job_idx=sweeper.job_idx,
            )
            sweeper.job_idx += len(returns)
            for trial, ret in zip(trials, returns, strict=True):
                state = tell(study, trial, ret, len(directions))
                told.add(trial.number)
                completed += state == TrialState.COMPLETE
                failed += state == TrialState.FAIL
        except BaseException:  # Ctrl-C, a launcher's error: no trial left RUNNING for good
            for trial in trials:
                if trial.number not in told:
                    study.tell(trial, state=TrialState.FAIL)
            raise

    if completed == 0 and failed and not study.get_trials(states=(TrialState.COMPLETE,)):
        raise RuntimeError(
            f"Every trial of study {study.study_name} failed; their errors are in the log above "
            f"and in each run's failure.json under {sweeper.config.hydra.sweep.dir}"
        )
    save_results(study, directions, Path(sweeper.config.hydra.sweep.dir))


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
