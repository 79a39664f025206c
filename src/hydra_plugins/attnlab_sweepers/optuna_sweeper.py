"""attnlab's Optuna sweeper: Hydra's Sweeper interface around Optuna's ask-and-tell API.

Selected by conf/hparams_search/optuna.yaml (`hydra/sweeper: attnlab_optuna`). Each trial is
one job of the configured launcher (in this process, or a submitit process or SLURM task),
whose return value (`optimized_metric`) is told to the study; the search loop is in `search.py`.
This module imports no Optuna: Hydra imports every plugin module on every start.
"""

from __future__ import annotations

from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from attnlab.utils.extras import require


class OptunaSweeper(Sweeper):
    """`sampler` and `pruner` are configs (`_target_` + Optuna's arguments), instantiated when
    the search starts; `direction` takes min|max (attnlab's optimized_mode) or Optuna's names;
    `params` maps config keys to Hydra sweep expressions. `trial_number` is set by the sweeper
    in each trial's config (the pruning callback finds its trial with it)."""

    def __init__(
        self,
        sampler: DictConfig | None,
        direction: Any,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int = 1,
        params: DictConfig | None = None,
        pruner: DictConfig | None = None,
        trial_number: int | None = None,
    ) -> None:
        self.sampler = sampler
        self.direction = direction
        self.storage = storage
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.params = params
        self.pruner = pruner
        self.job_idx = 0
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        require("optuna", "sqlalchemy", extra="sweep", feature="hparams_search=optuna")
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> None:
        from hydra_plugins.attnlab_sweepers.search import run_search

        run_search(self, arguments)
