"""`attnlab-eval ckpt_path=... lm_eval.tasks=[...]`: lm-evaluation-harness tasks on a causal-LM
run, their metrics added to the run's metrics.json as `lm_eval/<task>/<metric>` (what
attnlab-compare, its significance tests and ladders read).

    attnlab-eval ckpt_path=<run>/checkpoints/best.ckpt lm_eval.tasks=[hellaswag,arc_easy]
    attnlab-eval ckpt_path=... lm_eval.tasks=[my_task] lm_eval.include_path=tasks/  # your YAML
    attnlab-eval ckpt_path=... lm_eval.tasks=[...] lm_eval.model=hf   # the cross-check

lm_eval.model=attnlab evaluates the network itself (run/harness_lm.py: no export, batched on
`lm_eval.device`); lm_eval.model=hf exports the checkpoint (attnlab-export) to a temporary
folder, or reads `lm_eval.hf_path`, and evaluates it with lm-eval's own HFLM: both give the
same loglikelihoods (tests/test_lm_eval.py). Needs `pip install 'attnlab[lmeval]'`.
"""

from __future__ import annotations

import difflib
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from attnlab.run.artefacts import write_json
from attnlab.run.validation import ConfigError
from attnlab.utils.extras import install_hint, is_installed

log = logging.getLogger(__name__)

PREFIX = "lm_eval"
MODELS = ("attnlab", "hf")
METRICS_FILE = "metrics.json"


def check_settings(settings: DictConfig) -> list[str]:
    """The task names, after checking every lm_eval.* value (before any work)."""
    if not is_installed("lm_eval"):
        raise ConfigError(
            f"lm_eval.tasks needs lm-evaluation-harness, which is not installed: "
            f"{install_hint('lmeval')}"
        )
    tasks = settings.tasks
    tasks = [tasks] if isinstance(tasks, str) else list(tasks or [])
    if not tasks or not all(isinstance(t, str) and t for t in tasks):
        raise ConfigError(f"lm_eval.tasks={tasks} must be a list of lm-eval task names")
    if settings.model not in MODELS:
        raise ConfigError(f"lm_eval.model={settings.model}; valid choices: {', '.join(MODELS)}")
    if settings.model == "hf" and not all(map(is_installed, ("transformers", "accelerate"))):
        raise ConfigError(
            f"lm_eval.model=hf needs transformers and accelerate: {install_hint('lmeval')}"
        )
    if settings.hf_path is not None and not (Path(settings.hf_path) / "config.json").is_file():
        raise ConfigError(f"lm_eval.hf_path={settings.hf_path} holds no config.json")
    include = settings.include_path
    if include is not None and not Path(include).is_dir():
        raise ConfigError(f"lm_eval.include_path={include} is not a directory")
    for key in ("batch_size", "bootstrap_iters", "num_fewshot", "limit"):
        value = settings.get(key)
        if value is not None and not (isinstance(value, (int, float)) and value >= 0):
            raise ConfigError(f"lm_eval.{key}={value} must be a number >= 0 (or null)")
    if settings.batch_size is None or settings.batch_size < 1:
        raise ConfigError(f"lm_eval.batch_size={settings.batch_size} must be at least 1")
    from attnlab.utils.device import choose_device

    try:
        choose_device(settings.device)
    except ConfigError as error:
        raise ConfigError(f"lm_eval.{error}") from None
    return tasks


def task_manager(tasks: list[str], include_path: str | None) -> Any:
    """lm-eval's TaskManager knowing every task named (your folder alone when it holds them
    all: indexing lm-eval's own thousands of tasks takes seconds); an unknown name is refused
    with the closest known ones."""
    from lm_eval.tasks import TaskManager

    if include_path is not None:
        local = TaskManager(include_path=include_path, include_defaults=False)
        if all(local.match_tasks([task]) for task in tasks):
            return local
    manager = TaskManager(include_path=include_path)
    for task in tasks:
        if not manager.match_tasks([task]):
            close = difflib.get_close_matches(task, manager.all_tasks, n=3)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise ConfigError(
                f"lm_eval.tasks: {task!r} is no lm-eval task{hint} (`lm-eval ls tasks` lists "
                "them; your own: lm_eval.include_path=<folder of task YAMLs>)"
            )
    return manager


def build_lm(settings: DictConfig, module: Any, datamodule: Any, device: Any, workdir: Path) -> Any:
    """The lm-eval model: attnlab's network itself, or its export through HFLM."""
    if settings.model == "attnlab":
        from attnlab.run.harness_lm import AttnLabLM

        return AttnLabLM(module.network, module.task.spec, settings.batch_size, device)
    from lm_eval.models.huggingface import HFLM  # transformers, accelerate: check_settings

    path = settings.hf_path
    if path is None:
        from attnlab.interop.to_hf import export

        path, tokenizer = export(module, datamodule, workdir / "hf")
        if tokenizer is None:
            raise ConfigError("lm_eval.model=hf needs text: the run's data has no tokenizer")
    return HFLM(
        pretrained=str(path), device=str(device), batch_size=settings.batch_size, dtype="float32"
    )


def flatten(results: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """lm-eval's results as `lm_eval/<task>/<metric>` values (a filter other than `none`
    appended: `exact_match_strict-match`), and per task what is kept beside them: stderrs,
    n-shot, samples counted, the task's version."""
    metrics: dict[str, float] = {}
    details: dict[str, Any] = {}
    for task, values in results["results"].items():
        stderr = {}
        for key, value in values.items():
            name, _, where = key.partition(",")
            if not where or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue  # the alias, and stderrs lm-eval could not compute ("N/A")
            name = name if where == "none" else f"{name}_{where}"
            if "_stderr" in name:
                stderr[name.replace("_stderr", "")] = float(value)
            else:
                metrics[f"{PREFIX}/{task}/{name}"] = float(value)
        details[task] = {
            "stderr": stderr,
            "n_shot": results.get("n-shot", {}).get(task),
            "n_samples": results.get("n-samples", {}).get(task),
            "version": results.get("versions", {}).get(task),
        }
    return metrics, details


def record(
    run_dir: Path, metrics: dict[str, float], details: dict[str, Any], timeout: float = 5
) -> bool:
    """Put `metrics` into `run_dir`/metrics.json's metrics (a task evaluated again replaces
    its old values) and `details` under its `lm_eval` entry, by task, under the run folder's
    lock; False when the folder holds no finished run."""
    from filelock import FileLock, Timeout

    from attnlab.run.folder import LOCK_FILE

    path = run_dir / METRICS_FILE
    if not path.is_file():
        return False
    stale = tuple(f"{PREFIX}/{task}/" for task in details)
    try:
        with FileLock(str(run_dir / LOCK_FILE), timeout=timeout):
            summary = json.loads(path.read_text())
            kept = {k: v for k, v in summary.get("metrics", {}).items() if not k.startswith(stale)}
            summary["metrics"] = kept | metrics
            summary[PREFIX] = summary.get(PREFIX, {}) | details
            write_json(path, summary)
    except Timeout:
        raise ConfigError(
            f"{run_dir} is locked by a running job (its {LOCK_FILE}); evaluate it when that "
            "ends, or set lm_eval.record=false"
        ) from None
    return True


def run_folder_of(ckpt_path: str) -> Path:
    """<run>/checkpoints/<name>.ckpt -> <run>."""
    return Path(ckpt_path).resolve().parent.parent


def check_unlocked(run_dir: Path, timeout: float = 1) -> None:
    """Refuse, before any work, a run folder another process holds (a run still training)."""
    from filelock import FileLock, Timeout

    from attnlab.run.folder import LOCK_FILE

    if not (run_dir / METRICS_FILE).is_file():
        return
    try:
        with FileLock(str(run_dir / LOCK_FILE), timeout=timeout):
            pass
    except Timeout:
        raise ConfigError(
            f"{run_dir} is locked by a running job (its {LOCK_FILE}); evaluate it when that "
            "ends, or set lm_eval.record=false"
        ) from None


def record_in_run(cfg: DictConfig, result: dict[str, Any]) -> None:
    """`result`'s metrics into the checkpoint's run folder (lm_eval.record)."""
    run_dir = run_folder_of(cfg.ckpt_path)
    if record(run_dir, result["metrics"], result[PREFIX]):
        log.info("lm-eval metrics added to %s", run_dir / METRICS_FILE)
    else:
        log.warning("%s has no %s: lm-eval metrics not recorded there", run_dir, METRICS_FILE)


def evaluate_tasks(cfg: DictConfig, tasks: Sequence[str]) -> dict[str, Any]:
    """Run lm-eval's tasks on cfg.ckpt_path's network; returns what the eval's metrics.json
    holds (record_in_run adds it to the run's)."""
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.utils import make_table

    from attnlab.run.trained import load_trained_module
    from attnlab.utils.device import choose_device

    settings = cfg.lm_eval
    if settings.record:
        check_unlocked(run_folder_of(cfg.ckpt_path))
    manager = task_manager(list(tasks), settings.include_path)  # before loading the network
    _, datamodule, module = load_trained_module(cfg.ckpt_path)
    if module.task.name != "causal_lm" or module.task.spec.encode is None:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path} is a {module.task.name} run; lm_eval.tasks needs a "
            "causal language model trained on text (task causal_lm)"
        )
    device = choose_device(settings.device)  # checked in check_settings
    with tempfile.TemporaryDirectory(prefix="attnlab-lm-eval-") as workdir:
        lm = build_lm(settings, module, datamodule, device, Path(workdir))
        results = simple_evaluate(
            model=lm,
            tasks=list(tasks),
            num_fewshot=settings.num_fewshot,
            limit=settings.limit,
            bootstrap_iters=settings.bootstrap_iters,
            task_manager=manager,
            log_samples=False,
            random_seed=cfg.seed,
            numpy_random_seed=cfg.seed,
            torch_random_seed=cfg.seed,
            fewshot_random_seed=cfg.seed,
        )
    print(make_table(results))
    metrics, details = flatten(results)
    how = {"checkpoint": str(Path(cfg.ckpt_path).resolve()), "model": settings.model}
    how |= {key: settings[key] for key in ("num_fewshot", "limit", "include_path")}
    details = {task: entry | how for task, entry in details.items()}
    return {"metrics": metrics, PREFIX: details}
