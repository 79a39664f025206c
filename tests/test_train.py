"""End-to-end training runs on tiny configs: the pipeline, debug presets, resume, eval."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from attnlab.run.train import optimized_value, train
from tests.conftest import TINY, TINY_SETUP, compose_config, run_cli


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_default_config_trains_and_writes_metrics(train_config, tmp_path: Path) -> None:
    cfg = train_config("trainer.max_epochs=2")
    result = train(cfg)
    saved = read_metrics(tmp_path)
    assert saved == json.loads(json.dumps(result))
    metrics = saved["metrics"]
    for name in (
        "train/loss",
        "val/loss",
        "val/acc",
        "val/exact_match",
        "val/bleu",
        "test/loss",
        "test/acc",
        "test/exact_match",
        "test/bleu",
    ):
        assert math.isfinite(metrics[name]), name
    assert saved["parameters"]["total"] > saved["parameters"]["embedding"] > 0
    assert saved["global_step"] == 2 * 8  # 256 examples / batch 32, two epochs
    assert saved["tokens_seen"] > 0
    assert saved["choices"]["model"] == "encdec" and saved["choices"]["task"] == "seq2seq"
    # issue 31: no internal entries (`"experiment/matched@_global_": "None_encdec"`)
    assert not [group for group in saved["choices"] if "@" in group or "hydra" in group]
    assert Path(saved["best_checkpoint"]).is_file()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "csv" / "metrics.csv").is_file()
    assert optimized_value(cfg, result) == metrics["val/loss"]


@pytest.mark.parametrize("preset", ["fast", "overfit", "limit", "profiler"])
def test_debug_presets_run(train_config, tmp_path: Path, preset: str) -> None:
    overrides = [f"debug={preset}"]
    if preset == "overfit":
        overrides.append("trainer.max_epochs=3")
    result = train(train_config(*overrides, base=TINY_SETUP))  # the preset sets the epochs
    assert math.isfinite(result["metrics"]["test/loss"])
    expected_steps = {"fast": 1, "overfit": 3, "limit": 9, "profiler": 8}[preset]
    assert result["global_step"] == expected_steps


def test_seed_zero_is_honoured(tmp_path: Path) -> None:
    def run(name: str, seed: int) -> dict:  # each run in a folder of its own
        return train(compose_config(tmp_path / name, [*TINY, f"seed={seed}", "debug=fast"]))

    first = run("first", 0)
    second = run("second", 0)
    assert first["metrics"]["train/loss"] == second["metrics"]["train/loss"]
    third = run("third", 1)
    assert third["metrics"]["train/loss"] != first["metrics"]["train/loss"]


def test_tiny_batch_overfits(train_config) -> None:
    result = train(
        train_config(
            "debug=overfit",
            "trainer.max_epochs=150",
            "data.batch_size=8",
            "model.dropout=0",
            "optimizer.lr=3e-3",
            "test=false",
        )
    )
    assert result["metrics"]["train/loss"] < 0.05


def test_resume_from_last_checkpoint_continues_steps(train_config, tmp_path: Path) -> None:
    first = train(train_config("trainer.max_epochs=1"))
    assert first["global_step"] == 8
    last = tmp_path / "checkpoints" / "last.ckpt"
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    second = train(
        compose_config(resumed_dir, [*TINY_SETUP, "trainer.max_epochs=2", f"ckpt_path={last}"])
    )
    assert second["global_step"] == 16
    assert (
        torch.load(resumed_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
        == 16
    )


def test_train_then_eval_cli_gives_same_test_metrics(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_cli(
        "attnlab-train", *TINY, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    trained = read_metrics(run_dir)
    eval_dir = tmp_path / "eval"
    run_cli(
        "attnlab-eval",
        f"ckpt_path={trained['best_checkpoint']}",
        "trainer.accelerator=cpu",
        f"hydra.run.dir={eval_dir}",
        cwd=tmp_path,
    )
    evaluated = read_metrics(eval_dir)["metrics"]
    test_metrics = {k: v for k, v in trained["metrics"].items() if k.startswith("test/")}
    assert set(test_metrics) == set(evaluated)
    for name, value in test_metrics.items():
        assert evaluated[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_multirun_two_jobs(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    run_cli(
        "attnlab-train",
        "-m",
        "seed=1,2",
        "debug=fast",
        *TINY,
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    runs = sorted(p.parent.name for p in sweep_dir.glob("*/metrics.json"))
    assert runs == ["0", "1"]
    overrides = [(sweep_dir / run / ".hydra" / "overrides.yaml").read_text() for run in runs]
    assert "seed=1" in overrides[0] and "seed=2" in overrides[1]


def test_run_dirs_never_collide(tmp_path: Path) -> None:
    """Two runs started in the same second still get their own directories."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    dirs = set()
    for _ in range(3):
        GlobalHydra.instance().clear()
        with initialize_config_module("attnlab.conf", version_base="1.3"):
            cfg = compose("train", return_hydra_config=True)
        dirs.add((str(cfg.hydra.run.dir), str(cfg.hydra.sweep.dir)))
    GlobalHydra.instance().clear()
    assert len({run for run, _ in dirs}) == 3 and len({sweep for _, sweep in dirs}) == 3


KNOB_RUNS = {
    "encdec": ["model=encdec", "data=reverse"],
    "gpt": ["model=gpt", "data=toy_lm", "model.n_layers=1"],
    "bert": ["model=bert", "data=toy_mlm", "model.n_layers=1", "data.max_len=32"],
}


@pytest.mark.parametrize("architecture", list(KNOB_RUNS))
def test_architecture_knobs_from_the_command_line(architecture: str, tmp_path: Path) -> None:
    """Every knob away from its default at once, as a researcher would set them."""
    overrides = [
        *KNOB_RUNS[architecture],
        "model.d_model=32",
        "model.n_heads=4",
        "model.n_kv_heads=2",
        "model.qk_norm=true",
        "model.pos=rope",
        "model.norm=rmsnorm",
        "model.activation=swiglu",
        "model.tie_output=false",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "callbacks.rich_progress_bar=null",
        "print_config=false",
    ]
    cfg = compose_config(tmp_path, overrides)
    result = train(cfg)
    assert math.isfinite(result["metrics"]["test/loss"])
    network = torch.load(result["best_checkpoint"], weights_only=False)["state_dict"]
    assert any(k.endswith("gate.weight") for k in network)  # SwiGLU was built
    assert any(k.endswith("q_norm.weight") for k in network)  # and QK-norm


def test_a_run_that_ends_before_its_optimized_metric_is_logged_returns_no_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """attnlab-train model=gpt data=tokens ... trainer.max_steps=3: the steps end before the
    first validation; the run succeeded, so it must not end in a KeyError traceback."""
    from omegaconf import OmegaConf

    from attnlab.run.train import optimized_value

    cfg = OmegaConf.create({"optimized_metric": "val/loss"})
    with caplog.at_level("WARNING"):
        assert optimized_value(cfg, {"metrics": {}}) is None
    assert "optimized_metric=val/loss was not logged" in caplog.text
    assert optimized_value(cfg, {"metrics": {"val/loss": 1.5}}) == 1.5


def test_a_run_is_validated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """attnlab-train (its Hydra entry point, in process) checks the config once: each check
    of run/validation.py and the init.from_hf configuration runs once per run."""
    import sys

    from attnlab.run import train as train_command
    from attnlab.run import validation

    calls: dict[str, int] = {}

    def counted(module: object, name: str) -> None:
        original = getattr(module, name)

        def wrapper(*args: object, **kwargs: object) -> object:
            calls[name] = calls.get(name, 0) + 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    for name in ("check_compatibility", "check_required", "check_run_settings"):
        counted(validation, name)
    counted(validation, "check_moved_keys")
    counted(train_command, "check_ladder")
    monkeypatch.chdir(tmp_path)
    args = [*TINY, "trainer.limit_train_batches=2", "print_config=false", "test=false"]
    monkeypatch.setattr(sys, "argv", ["attnlab-train", *args, f"hydra.run.dir={tmp_path}/run"])
    train_command.main()
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert calls == {
        "check_compatibility": 1,
        "check_required": 1,
        "check_run_settings": 1,
        "check_moved_keys": 1,
        "check_ladder": 1,
    }
