"""`attnlab-eval ckpt_path=... lm_eval.tasks=[...]` end to end: a sweep of two causal-LM runs
on local text, lm-eval's local tasks on each (attnlab's network, and the export through HFLM
as a cross-check: the same metrics), the metrics in each run's metrics.json, and
attnlab-compare's tables and significance tests reading them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.lm_eval_tasks import LINES, TASKS, write_tasks

pytest.importorskip("lm_eval", reason="lm-eval is not installed: pip install 'attnlab[lmeval]'")
pytest.importorskip("accelerate", reason="HFLM needs accelerate: pip install 'attnlab[lmeval]'")

TINY_TEXT_GPT = [
    "model=gpt",
    "data=text_files",
    "data.source.tokenizer=bpe",
    "data.source.bpe_vocab_size=300",
    "data.block_size=32",
    "data.batch_size=8",
    "data.train_samples_per_epoch=64",
    "model.d_model=32",
    "model.n_heads=2",
    "model.n_layers=1",
    "model.d_ff=64",
    "trainer.accelerator=cpu",
    "trainer.max_steps=4",
    "trainer.val_check_interval=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "print_config=false",
]


def lm_eval(run: Path, tasks: Path, out: Path, *extra: str) -> dict:
    run_cli(
        "attnlab-eval",
        f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
        f"lm_eval.tasks=[{','.join(TASKS)}]",
        f"lm_eval.include_path={tasks}",
        "lm_eval.device=cpu",
        "lm_eval.bootstrap_iters=0",
        f"hydra.run.dir={out}",
        *extra,
        cwd=out.parent,
    )
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow  # two tiny trainings and three evaluations, each a process: ~1 min
def test_lm_eval_metrics_reach_the_runs_and_attnlab_compare(tmp_path: Path) -> None:
    text = {}
    for split, lines in (("train", LINES[:240]), ("val", LINES[240:270]), ("test", LINES[270:])):
        text[split] = tmp_path / f"{split}.txt"
        text[split].write_text("\n".join(lines) + "\n")
    sweep = tmp_path / "sweep"
    run_cli(
        "attnlab-train",
        "-m",
        *TINY_TEXT_GPT,
        *(f"data.source.text.{split}={path}" for split, path in text.items()),
        "model.activation=gelu,relu",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    runs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert len(runs) == 2
    tasks = write_tasks(tmp_path / "tasks")

    ours = [lm_eval(run, tasks, tmp_path / f"eval{i}") for i, run in enumerate(runs)]
    theirs = lm_eval(
        runs[0], tasks, tmp_path / "eval_hf", "lm_eval.model=hf", "lm_eval.record=false"
    )
    assert {f"lm_eval/{t}/" for t in TASKS} == {
        m.rsplit("/", 1)[0] + "/" for m in ours[0]["metrics"]
    }
    assert ours[0]["metrics"] == pytest.approx(theirs["metrics"], rel=1e-5)
    assert theirs["lm_eval"]["toy_mc"]["model"] == "hf"
    for run, result in zip(runs, ours, strict=True):
        summary = json.loads((run / "metrics.json").read_text())
        assert result["metrics"].items() <= summary["metrics"].items()  # recorded in the run
        assert "val/loss" in summary["metrics"]  # beside what training wrote
        assert summary["lm_eval"]["toy_ppl"]["checkpoint"].endswith("best.ckpt")

    run_cli(
        "attnlab-compare",
        str(sweep),
        "--baseline",
        "model.activation=gelu",
        "--stat-metric",
        "lm_eval/toy_ppl/word_perplexity",
        cwd=tmp_path,
    )
    with (sweep / "compare" / "comparison.csv").open() as handle:
        rows = {row["variant"]: row for row in csv.DictReader(handle)}
    for run, result in zip(runs, ours, strict=True):
        variant = f"model.activation={run_activation(run)}"
        for name, value in result["metrics"].items():
            assert float(rows[variant][f"{name}_mean"]) == pytest.approx(value)
    with (sweep / "compare" / "significance.csv").open() as handle:
        (test,) = list(csv.DictReader(handle))
    assert (
        test["metric"] == "lm_eval/toy_ppl/word_perplexity"
        and test["variant"] == "model.activation=relu"
    )


def run_activation(run: Path) -> str:
    overrides = (run / ".hydra" / "overrides.yaml").read_text()
    return "relu" if "model.activation=relu" in overrides else "gelu"
