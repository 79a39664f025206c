"""Pruning for Optuna searches: a trial reports its validation metric at every validation and
stops when the study's pruner says so.

Enabled by conf/hparams_search/optuna.yaml. The trial is found through the job's Hydra config,
where attnlab's Optuna sweeper (src/hydra_plugins/attnlab_sweepers) set `trial_number` beside
the study's `storage`, `study_name` and `pruner`; the job opens the storage itself, so this
works in the sweeper's process (basic launcher) and in a submitit process or SLURM task alike.
Outside a trial it does nothing. Optuna's own PyTorchLightningPruningCallback (optuna-integration)
is written for the `lightning.pytorch` namespace and reports per epoch; attnlab validates every
`val_check_interval` steps, so values are reported at the global step.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig

from attnlab.utils.extras import require

log = logging.getLogger(__name__)


def trial_settings() -> dict[str, Any] | None:
    """The sweeper's settings (storage, study_name, trial_number, pruner) of this job, or None
    when this job is no trial of an Optuna search."""
    if not HydraConfig.initialized():
        return None
    sweeper = HydraConfig.get().sweeper
    if sweeper.get("trial_number") is None:
        return None
    return {
        "storage": sweeper.get("storage"),
        "study_name": sweeper.get("study_name"),
        "trial_number": int(sweeper.trial_number),
        "pruner": sweeper.get("pruner"),
    }


def open_trial(
    storage: str, study_name: str, trial_number: int, pruner: Any = None
) -> Any:  # optuna.Trial
    """The running trial `trial_number` of the stored study, with the sweep's pruner."""
    require("optuna", extra="sweep", feature="pruning an Optuna trial")
    import optuna

    from hydra_plugins.attnlab_sweepers.study import build_pruner, open_storage

    backend = open_storage(storage)
    assert backend is not None
    study = optuna.load_study(study_name=study_name, storage=backend, pruner=build_pruner(pruner))
    study_id = backend.get_study_id_from_name(study_name)
    trial_id = backend.get_trial_id_from_study_id_trial_number(study_id, trial_number)
    return optuna.trial.Trial(study, trial_id)


class OptunaPruning(pl.Callback):
    """At every validation (not the sanity check): report `monitor` at the global step to this
    job's Optuna trial; raise optuna.TrialPruned when the pruner says stop. The sweeper records
    the trial as PRUNED. `trial` is for programmatic use (an optuna.Trial); by default it is
    found from the job's Hydra config."""

    def __init__(self, monitor: str, trial: Any = None) -> None:
        self.monitor = monitor
        self.trial = trial
        self._looked_up = trial is not None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._looked_up or stage != "fit":
            return
        self._looked_up = True
        settings = trial_settings()
        if settings is None:
            return
        if not settings["storage"]:
            log.warning("Optuna pruning is off: the study has no storage the job can open")
            return
        if trainer.is_global_zero:  # only rank 0 talks to the study
            self.trial = open_trial(**settings)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self._looked_up:
            return
        prune, message = False, ""
        if self.trial is not None:
            value = trainer.callback_metrics.get(self.monitor)
            if value is not None:  # once per validation: a host read is fine here
                value = float(value)
                self.trial.report(value, step=trainer.global_step)
                prune = self.trial.should_prune()
                message = f"pruned at step {trainer.global_step}: {self.monitor}={value:.4g}"
        # Every DDP rank stops together, on rank 0's word.
        if trainer.world_size > 1:
            prune, message = trainer.strategy.broadcast((prune, message), src=0)
        if prune:
            import optuna

            raise optuna.TrialPruned(message)
