"""Scaling ladders (run/ladder_rungs.py, conf/ladder/): a rung sets the model's sizes, its budget
the run's steps, counted on the real network; bad ladders fail before any work."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from attnlab import run as build
from attnlab.run.ladder_checks import check_ladder
from attnlab.run.ladder_rungs import apply_ladder
from attnlab.run.train import check_config, train
from attnlab.run.validation import ConfigError
from tests.conftest import compose_config, run_cli

# The synthetic language: no real data, data in milliseconds.
TOY = ["ladder=tiny_cpu", "data=toy_lm", "data.block_size=32", "data.batch_size=8"]


def compose(tmp_path: Path, *overrides: str):
    return compose_config(tmp_path, [*TOY, *overrides])


def real_network_and_task(cfg):
    """The network and task a run builds (the module), for counts independent of the ladder's."""
    module = build.build_module(cfg, build.build_datamodule(cfg))
    return module.network, module.task


@pytest.mark.parametrize("rung", [0, 1, 2, 3])
def test_rung_sets_the_model_sizes(tmp_path: Path, rung: int) -> None:
    cfg = compose(tmp_path, f"ladder.rung={rung}")
    check_config(cfg)
    wanted = cfg.ladder.rungs[rung]
    for field in ("d_model", "n_layers", "n_heads"):
        assert cfg.model[field] == wanted[field]
    assert cfg.model.d_ff == wanted.get("d_ff")  # null: the model's 4 x d_model
    assert cfg.ladder.base_width == cfg.ladder.rungs[0].d_model  # the μP base width


def test_token_budget_sets_max_steps_from_the_real_network(tmp_path: Path) -> None:
    rung = random.randrange(4)
    r = random.uniform(0.5, 30)
    cfg = compose(tmp_path, f"ladder.rung={rung}", f"ladder.tokens_per_param={r}")
    check_config(cfg)
    spec = build.build_datamodule(cfg).spec
    plan = apply_ladder(cfg, spec)
    network, _ = real_network_and_task(cfg)
    non_embedding = build.count_parameters(network)["non_embedding"]
    assert plan.non_embedding_parameters == non_embedding
    per_step = cfg.data.batch_size * cfg.data.block_size
    assert plan.tokens_per_step == per_step
    # at least r x N tokens, less than one validation interval more
    steps = cfg.trainer.max_steps
    assert steps == plan.max_steps
    assert steps * per_step >= r * non_embedding
    assert (steps - plan.val_every_steps) * per_step < r * non_embedding
    # validations: ladder.evals of them, the last at the last step
    assert cfg.trainer.val_check_interval * cfg.ladder.evals == steps
    assert cfg.trainer.check_val_every_n_epoch is None
    assert cfg.scheduler.warmup_steps == max(1, round(cfg.ladder.warmup_fraction * steps))


def test_tokens_per_step_count_accumulation_and_devices(tmp_path: Path) -> None:
    cfg = compose(
        tmp_path,
        "ladder.rung=1",
        "trainer.accumulate_grad_batches=3",
        "trainer.devices=2",
    )
    plan = apply_ladder(cfg, build.build_datamodule(cfg).spec)
    assert plan.tokens_per_step == cfg.data.batch_size * cfg.data.block_size * 3 * 2
    # Lightning counts the validation interval in training batches
    assert cfg.trainer.val_check_interval == plan.val_every_steps * 3


def test_flops_budget_uses_the_flops_per_token_of_metrics_json(tmp_path: Path) -> None:
    rung = random.randrange(4)
    flops = random.uniform(1e11, 1e12)
    cfg = compose(tmp_path, f"ladder.rung={rung}", f"ladder.flops={flops}")
    check_config(cfg)
    plan = apply_ladder(cfg, build.build_datamodule(cfg).spec)
    network, task = real_network_and_task(cfg)
    per_token = task.flops_per_token(network, cfg.data.block_size)
    assert plan.flops_per_token == per_token
    assert plan.budget == f"flops={flops:g}"  # wins over tokens_per_param
    compute = plan.max_steps * plan.tokens_per_step * per_token
    assert flops <= compute < flops + plan.val_every_steps * plan.tokens_per_step * per_token


def test_without_a_ladder_nothing_changes(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, ["data=toy_lm", "model=gpt"])
    before = OmegaConf.to_container(cfg.trainer)
    check_ladder(cfg)
    assert apply_ladder(cfg, build.build_datamodule(cfg).spec) is None
    assert OmegaConf.to_container(cfg.trainer) == before


RUNG = "{d_model:32,n_layers:2,n_heads:2}"
BAD = [
    (["ladder.rung=4"], "ladder.rung=4 is not valid: ladder tiny_cpu has rungs 0, 1, 2, 3"),
    (["ladder.rung=-1"], "ladder.rung=-1 is not valid"),
    (["ladder.rungs=[]"], "ladder.rungs=[] is not valid"),
    (
        [f"ladder.rungs=[{RUNG},{{d_model:64,n_layers:2}}]"],
        "ladder.rungs[1].n_heads is missing: each rung needs d_model, n_layers, n_heads",
    ),
    (
        ["ladder.rungs=[{d_model:32,n_layers:2,n_heads:2,d_fff:64}]"],
        "ladder.rungs[0].d_fff=64 is not valid: a rung's fields are d_model, n_layers",
    ),
    (["ladder.rungs=[{d_model:0,n_layers:2,n_heads:2}]"], "ladder.rungs[0].d_model=0 is not"),
    (["ladder.tokens_per_param=null"], "ladder tiny_cpu has no budget: set ladder.tokens_per"),
    (["ladder.tokens_per_param=0"], "ladder.tokens_per_param=0 is not valid"),
    (["ladder.flops=-5"], "ladder.flops=-5 is not valid"),
    (["ladder.evals=0"], "ladder.evals=0 is not valid"),
    (["ladder.warmup_fraction=1.5"], "ladder.warmup_fraction=1.5 is not valid"),
    (["model.d_model=128"], "model.d_model=128 is not valid with ladder.rung=0: the rung sets"),
    # issue 31: the 7 was replaced by the budget's 124 steps, silently
    (["trainer.max_steps=7"], "trainer.max_steps=7 is not valid with ladder=tiny_cpu: the rung"),
    (["trainer.max_epochs=2"], "trainer.max_epochs=2 is not valid with ladder=tiny_cpu"),
    (["scheduler.warmup_steps=10"], "scheduler.warmup_steps=10 is not valid with ladder=tiny"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[b[1][:28] for b in BAD])
def test_bad_ladder_fails_before_any_work(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    cfg = compose(tmp_path, *overrides)
    with pytest.raises(ConfigError) as error:
        check_config(cfg)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_ladder_run_records_what_a_fit_needs(tmp_path: Path) -> None:
    """A few steps: metrics.json holds the rung, its counts and the final validation loss."""
    cfg = compose(
        tmp_path,
        "ladder.rung=0",
        "ladder.tokens_per_param=0.1",
        "ladder.evals=2",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "callbacks.model_summary=null",
        "logger=csv",
    )
    result = train(cfg)
    written = json.loads((tmp_path / "metrics.json").read_text())
    record = written["ladder"]
    assert record["name"] == "tiny_cpu" and record["rung"] == 0 and record["rungs"] == 4
    assert record["sizes"]["d_model"] == cfg.ladder.rungs[0].d_model
    assert record["non_embedding_parameters"] == written["parameters"]["non_embedding"]
    assert (
        record["tokens_seen"]
        == written["tokens_seen"]
        == result["global_step"] * (record["tokens_per_step"])
    )
    assert result["global_step"] == record["max_steps"]
    per_token = written["flops_per_token"]
    assert record["flops_per_token"] == per_token
    assert (
        record["training_flops"] == written["training_flops"] == per_token * record["tokens_seen"]
    )
    # the last validation was at the last step (CSV rows count steps from 0)
    with (tmp_path / "csv" / "metrics.csv").open() as handle:
        validations = [row for row in csv.DictReader(handle) if row["val/loss"]]
    assert len(validations) == cfg.ladder.evals
    assert int(validations[-1]["step"]) == record["max_steps"] - 1
    assert record["final_val_loss"] == written["metrics"]["val/loss"]
    assert record["final_val_loss"] == pytest.approx(float(validations[-1]["val/loss"]))


@pytest.mark.slow
def test_tiny_ladder_through_the_commands(tmp_path: Path) -> None:
    """Three rungs x two variants x one seed, a few steps each, through `attnlab-train -m`, then
    `attnlab-compare --ladder`: every run's compute is its metrics.json's, the fit is written."""
    sweep = tmp_path / "ladder"
    run_cli(
        "attnlab-train",
        "-m",
        *TOY,
        "ladder.rung=0,1,2",
        "model.pos=learned,rope",
        "seed=1",
        "ladder.tokens_per_param=0.2",
        "ladder.evals=1",
        "trainer.limit_val_batches=4",
        "trainer.limit_test_batches=4",
        "callbacks.model_summary=null",
        "print_config=false",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        timeout=900,  # six runs: seconds each on a quiet machine, minutes on a loaded one
    )
    results = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert len(results) == 6
    computes = {}
    for result in results:
        record = result["ladder"]
        assert record["training_flops"] == result["flops_per_token"] * result["tokens_seen"]
        computes.setdefault(record["rung"], set()).add(record["training_flops"])
    # learned and rope have the same non-embedding sizes: one compute per rung, growing
    assert [len(computes[r]) for r in (0, 1, 2)] == [1, 1, 1]
    assert min(computes[0]) < min(computes[1]) < min(computes[2])

    out = tmp_path / "fit"
    compare = run_cli(
        "attnlab-compare",
        "--ladder",
        str(sweep),
        "--baseline",
        "model.pos=learned",
        "--bootstrap",
        "100",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert "model.pos=rope" in compare.stdout
    for name in ("ladder.md", "ladder.csv", "loss_vs_compute.png", "multiplier_vs_compute.png"):
        assert (out / name).is_file(), name
    with (out / "ladder_runs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    flops = {float(r["compute"]) for r in rows}
    assert flops == {float(c) for values in computes.values() for c in values}
