"""The Optuna sweeper of hydra-optuna-sweeper, made fit for long searches (see `_optuna`).

Selected by conf/hparams_search/optuna.yaml through `hydra.sweeper._target_`; every option of
the plugin's `hydra/sweeper: optuna` config works unchanged.
"""

from __future__ import annotations

from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper as PluginSweeper
from omegaconf import DictConfig


class OptunaSweeper(PluginSweeper):
    """Failed trials are told to Optuna as FAIL instead of ending the sweep; `direction` also
    takes attnlab's `optimized_mode` (min|max); a SQLite storage's folder is created."""

    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: Any | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        search_space: DictConfig | None,
        custom_search_space: str | None,
        params: DictConfig | None,
    ) -> None:
        # Imported here, as the plugin does: Hydra imports this module on every start.
        from hydra_plugins.attnlab_sweepers._optuna import TolerantOptunaSweeperImpl

        self.sweeper = TolerantOptunaSweeperImpl(
            sampler,
            direction,
            storage,
            study_name,
            n_trials,
            n_jobs,
            search_space,
            custom_search_space,
            params,
        )
