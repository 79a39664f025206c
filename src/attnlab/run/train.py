"""`attnlab-train`: fit a network on a task, test the best checkpoint, write metrics.json.

attnlab-train model=encdec data=reverse trainer.max_epochs=5
attnlab-train -m seed=1,2,3
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from attnlab.run.artefacts import write_failure, write_metrics
from attnlab.run.config_report import print_config
from attnlab.run.errors import exits_on_input_error, with_config_hints
from attnlab.run.folder import RunFolderError, attempt_started, claim_run_folder, mark_started
from attnlab.run.ladder_checks import check_ladder
from attnlab.run.ladder_rungs import apply_ladder
from attnlab.run.record import finished_record, tokens_seen
from attnlab.run.resolvers import fix_output_dir
from attnlab.run.resume_overrides import with_original_overrides
from attnlab.run.validation import chosen_options
from attnlab.utils.quiet import quiet_loggers, silence_uninformative_warnings

# torch and Lightning are imported by the functions that run a job: `--help`, `--cfg job` and
# config errors answer without them (scripts/bench_startup.py).
if TYPE_CHECKING:
    import lightning.pytorch as pl

log = logging.getLogger(__name__)

# 128 + SIGTERM, what a shell reports for a job killed by SIGTERM: a stopped run is not done.
SIGTERM_EXIT_CODE = 143


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: float(value) for name, value in sorted(metrics.items())}


def train(cfg: DictConfig, extra_callbacks: list[pl.Callback] | None = None) -> dict[str, Any]:
    """Run one training job from a composed config; returns what metrics.json holds.

    compose (the caller) -> validate once -> build -> fit -> test -> record. `extra_callbacks`
    join the configured ones (notebooks, benchmarks). A folder that holds another run is
    refused unless this resumes it; the folder is locked while the run writes to it
    (attnlab/run/folder.py). A config composed without a Hydra app (`hydra.compose`) runs in a
    fresh folder under paths.log_dir.
    """
    fix_output_dir(cfg)
    with claim_run_folder(cfg):
        check_config(cfg)
        return train_checked(cfg, extra_callbacks)


def check_config(cfg: DictConfig) -> None:
    """Every check of a training config that needs no data: a ConfigError before any work.
    Runs once per run (tests/test_train.py counts it)."""
    from attnlab.run.early_checks import check_before_torch
    from attnlab.run.extensions import import_extensions
    from attnlab.run.validation import check_compatibility, check_required

    import_extensions(cfg)  # before any check: they register models, schemes, corpora
    if (cfg.get("init") or {}).get("from_hf"):  # model.* from its config.json, checked too
        from attnlab.interop.from_hf import configure_from_hf

        configure_from_hf(cfg)
    check_ladder(cfg)  # before anything resolves the rung's sizes
    check_required(cfg)
    check_before_torch(cfg)  # a second, not fifteen: before anything imports torch
    check_compatibility(cfg)


def train_checked(
    cfg: DictConfig, extra_callbacks: list[pl.Callback] | None = None, show_config: bool = False
) -> dict[str, Any]:
    """build -> fit -> test -> record, for a config that `check_config` passed. The config
    tree (`show_config`, the CLI's) is printed once everything is built: a value refused while
    building (the data's sizes, the Trainer's devices) is one line, not under the tree."""
    import lightning.pytorch as pl
    from lightning.pytorch.utilities import rank_zero_info

    from attnlab.run import assemble
    from attnlab.run.checkpoint_io import release_kept_checkpoint
    from attnlab.run.checkpoints import check_checkpoint_fits, resume_checkpoint

    start = time.perf_counter()
    try:
        ckpt_path = resume_checkpoint(cfg)
        if cfg.get("seed") is not None:  # seed=0 is a seed too
            pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the config says it
        datamodule = assemble.build_datamodule(cfg)
        rung = apply_ladder(cfg, datamodule.spec)  # ladder=...: the rung's budget sets the steps
        module = assemble.build_module(cfg, datamodule)  # the last checks: the data's sizes
        if ckpt_path is not None:  # another tokenizer's data: another vocabulary
            check_checkpoint_fits(
                cfg, module, ckpt_path, "ckpt_path" if cfg.get("ckpt_path") else "resume"
            )
        trainer = _build_trainer(cfg, datamodule, extra_callbacks, resumed=ckpt_path is not None)
        mark_started(cfg)
        if show_config:
            print_config(cfg)
        if cfg.get("resume") is not None and ckpt_path is not None:
            log.info("Resuming from %s", ckpt_path)  # every check passed
        result = _fit_and_test_logged(cfg, datamodule, module, trainer, start, ckpt_path)
    finally:  # a resume's checkpoint kept for fit, if fit never read it
        release_kept_checkpoint()
    if rung is not None:  # what a ladder's fit reads (run/ladder_rungs.py)
        result["ladder"] = rung.record(result)
    write_metrics(Path(cfg.paths.output_dir) / "metrics.json", result)
    rank_zero_info(f"Run directory: {cfg.paths.output_dir} (metrics.json, checkpoints/, logs)")
    return result


def _build_trainer(
    cfg: DictConfig,
    datamodule: pl.LightningDataModule,
    extra_callbacks: list[pl.Callback] | None,
    resumed: bool,
) -> pl.Trainer:
    """Callbacks, loggers and the Trainer."""
    from attnlab.csv_logger import forget_metric_history
    from attnlab.run import assemble

    callbacks = [*assemble.build_callbacks(cfg), *(extra_callbacks or [])]
    loggers = assemble.build_loggers(cfg)
    quiet_loggers(loggers)
    if cfg.get("resume") is not None and not resumed:  # killed before its first checkpoint
        forget_metric_history(loggers)
    return assemble.build_trainer(cfg, callbacks, loggers, datamodule)


def _fit_and_test_logged(
    cfg: DictConfig,
    datamodule: pl.LightningDataModule,
    module: pl.LightningModule,
    trainer: pl.Trainer,
    start: float,
    ckpt_path: str | None,
) -> dict[str, Any]:
    """`_fit_and_test`, with a SIGTERM reported as a stop to resume and W&B closed after."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from attnlab.loggers import finish_wandb, summarise_best
    from attnlab.run.distributed import stop_launched_ranks

    failed = True
    try:
        result = _fit_and_test(cfg, datamodule, module, trainer, start, ckpt_path)
        summarise_best(trainer.loggers, cfg.get("optimized_metric"), trainer.checkpoint_callback)
        failed = False
        return result
    except SIGTERMException:
        # ResumeState saved last.ckpt; no metrics.json: the run is not finished.
        log.warning(
            "Stopped by SIGTERM at step %d; continue with `attnlab-train resume=%s` (exit %d)",
            trainer.global_step,
            cfg.paths.output_dir,
            SIGTERM_EXIT_CODE,
        )
        raise SIGTERMException(SIGTERM_EXIT_CODE) from None
    finally:
        # Also after a crash: the next job of a multirun (same process) must not log into this
        # job's W&B run.
        finish_wandb(trainer.loggers, failed=failed)
        if failed:  # no DDP rank may outlive a failed job (docs/reliability.md)
            stop_launched_ranks(trainer)


def _fit_and_test(
    cfg: DictConfig,
    datamodule: pl.LightningDataModule,
    module: pl.LightningModule,
    trainer: pl.Trainer,
    start: float,
    ckpt_path: str | None = None,
) -> dict[str, Any]:
    """Log the hyperparameters, fit, test the best checkpoint; returns what metrics.json holds."""
    from attnlab.loggers import log_hyperparams
    from attnlab.models.parameters import count_parameters

    parameters = count_parameters(module.network)
    hparams = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "choices": chosen_options(),
        "parameters": parameters,
    }
    log_hyperparams(trainer.loggers, hparams)

    fit_metrics: dict[str, Any] = {}
    if cfg.get("train", True):
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        fit_metrics = _scalars(trainer.callback_metrics)
    tokens = tokens_seen(module, trainer)  # before testing a checkpoint reloads a count
    fit_time = time.perf_counter() - start

    test_metrics: dict[str, Any] = {}
    best_ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.get("test", True):
        if not best_ckpt:
            log.warning(
                "No best checkpoint (%s): testing the weights as they are.", _no_best(trainer)
            )
        trainer.test(module, datamodule=datamodule, ckpt_path=best_ckpt or None)
        test_metrics = _scalars(trainer.callback_metrics)

    metrics = {
        **{k: v for k, v in fit_metrics.items() if not k.startswith("test/")},
        **{k: v for k, v in test_metrics.items() if k.startswith("test/")},
    }
    return finished_record(
        cfg,
        module,
        trainer,
        metrics,
        parameters=parameters,
        tokens=tokens,
        best_checkpoint=best_ckpt,
        fit_time=fit_time,
        start=start,
    )


def _no_best(trainer: pl.Trainer) -> str:
    """Why a run has no best checkpoint to test."""
    if trainer.fast_dev_run:
        return "fast_dev_run saves none"
    if trainer.checkpoint_callback is None:
        return "checkpointing is off"
    return "no validation ran"


def optimized_value(cfg: DictConfig, result: dict[str, Any]) -> float | None:
    """The value sweepers optimise (`optimized_metric`), from this run's metrics."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in result["metrics"]:
        # The run itself succeeded (its name was checked before it started): it ended before
        # logging it, e.g. trainer.max_steps reached before the first validation.
        log.warning(
            "optimized_metric=%s was not logged (the run ended before it was, e.g. "
            "trainer.max_steps before the first validation); sweepers get no value",
            name,
        )
        return None
    return result["metrics"][name]


@hydra.main(version_base="1.3", config_path="pkg://attnlab.conf", config_name="train")
@exits_on_input_error
def hydra_main(cfg: DictConfig) -> float | None:
    attempt = None
    try:
        # The folder first: a bad value given for another run's folder writes nothing there.
        with claim_run_folder(cfg) as attempt:
            silence_uninformative_warnings(cfg.get("extras", {}).get("ignore_warnings", True))
            check_config(cfg)  # once: train_checked does not check again
            from attnlab.run.distributed import multirun_job

            with multirun_job():  # DDP ranks that Lightning launches run this job only
                result = train_checked(cfg, show_config=True)
    except Exception as error:
        # A refused run writes nothing in the folder, nor does a resume that failed before it
        # began work: the run there stays as it was (attnlab-compare reads failure.json).
        refused = isinstance(error, RunFolderError) or (
            attempt is not None and attempt.resumes_run and not attempt_started(cfg)
        )
        if not refused:
            write_failure(Path(cfg.paths.output_dir), error)
        raise
    return optimized_value(cfg, result)


main = with_config_hints("train", hydra_main, rewrite_args=with_original_overrides)


if __name__ == "__main__":
    main()
