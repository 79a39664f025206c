"""`attnlab-eval ckpt_path=...`: test a checkpoint with the config it was trained with.

attnlab-eval ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt
attnlab-eval ckpt_path=... +data.batch_size=256 trainer.accelerator=cpu
attnlab-eval ckpt_path=<masked-LM run>/checkpoints/best.ckpt +data.corpus=sst2  # another corpus
attnlab-eval ckpt_path=<causal-LM run>/checkpoints/best.ckpt lm_eval.tasks=[arc_easy]  # lm-eval
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from attnlab import run
from attnlab.run.artefacts import write_metrics
from attnlab.run.config_report import print_config
from attnlab.run.errors import exits_on_input_error, with_config_hints
from attnlab.utils.quiet import quiet_loggers, silence_uninformative_warnings


def evaluate(cfg: DictConfig, show_config: bool = False) -> dict[str, Any]:
    """Rebuild the run stored in `cfg.ckpt_path`, test it, and write metrics.json. The config
    tree (`show_config`) comes once all is built: a refused value is one line, not under it."""
    import lightning.pytorch as pl  # here, not at the top: `--help` answers without it

    from attnlab.run.validation import check_command

    check_command("eval", cfg)  # trainer.precision=banana: before the checkpoint is read
    start = time.perf_counter()
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the config says it
    _, datamodule, module = run.load_trained_module(cfg.ckpt_path, cfg.get("data"))
    loggers = run.build_loggers(cfg)
    quiet_loggers(loggers)
    trainer = run.build_trainer(cfg, callbacks=[], loggers=loggers)
    if show_config:
        print_config(cfg)
    trainer.test(module, datamodule=datamodule)
    result = {
        "metrics": {name: float(value) for name, value in sorted(trainer.callback_metrics.items())},
        "checkpoint": str(Path(cfg.ckpt_path).resolve()),
        "parameters": run.count_parameters(module.network),
        "wall_time_s": round(time.perf_counter() - start, 2),
    }
    write_metrics(Path(cfg.paths.output_dir) / "metrics.json", result)
    return result


def evaluate_lm_eval(cfg: DictConfig) -> dict[str, Any]:
    """lm-evaluation-harness tasks (`lm_eval.tasks`) on the checkpoint: run/harness.py;
    writes this evaluation's metrics.json, then adds the metrics to the run's."""
    from attnlab.run.harness import check_settings, evaluate_tasks, record_in_run

    tasks = check_settings(cfg.lm_eval)  # before any work
    start = time.perf_counter()
    result = evaluate_tasks(cfg, tasks)
    result["wall_time_s"] = round(time.perf_counter() - start, 2)
    write_metrics(Path(cfg.paths.output_dir) / "metrics.json", result)  # kept whatever follows
    if cfg.lm_eval.record:
        record_in_run(cfg, result)
    return result


@hydra.main(version_base="1.3", config_path="pkg://attnlab.conf", config_name="eval")
@exits_on_input_error
def hydra_main(cfg: DictConfig) -> None:
    silence_uninformative_warnings(cfg.get("extras", {}).get("ignore_warnings", True))
    if cfg.get("lm_eval") and cfg.lm_eval.get("tasks"):
        print_config(cfg)
        evaluate_lm_eval(cfg)
    else:
        evaluate(cfg, show_config=True)


main = with_config_hints("eval", hydra_main)

if __name__ == "__main__":
    main()
