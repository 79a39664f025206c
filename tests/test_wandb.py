"""Weights & Biases, offline only: run name, group, tags and config; one W&B run per job of a
multirun; offline without credentials; samples as a table; checkpoints as artifacts."""

from __future__ import annotations

import json
import logging
import math
import struct
from pathlib import Path
from typing import Any

import pytest
import wandb
from wandb.proto import wandb_internal_pb2 as pb

from attnlab import run as build
from attnlab.loggers import (
    changed_knobs,
    finish_wandb,
    has_wandb_credentials,
    run_group,
    run_name,
    wandb_arguments,
)
from attnlab.run.train import train
from tests.conftest import TINY_SETUP, compose_config, run_cli

FAST = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "logger=wandb",
]
TINY_GPT = [
    "model=gpt",
    "data=toy_lm",
    "model.n_layers=1",
    "model.d_model=32",
    "model.n_heads=2",
    "data.block_size=16",
    "data.batch_size=8",
    "data.num_train_tokens=4000",
    "data.num_val_tokens=1000",
    "data.num_test_tokens=1000",
    "trainer.accelerator=cpu",
    "callbacks=[default,sample_text]",
    "callbacks.sample_text.prompts=['1 2']",  # toy LM symbols
    "callbacks.sample_text.max_new_tokens=4",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "print_config=false",
]


@pytest.fixture(autouse=True)
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline and quiet, with wandb's own settings and caches in tmp_path."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb_home" / name.lower()))
    # wandb reads the environment once per process (its setup singleton): a test that ran
    # earlier with WANDB_MODE=online (or unset) would otherwise decide this one's mode.
    wandb.teardown()
    yield
    if wandb.run is not None:  # a failed test must not leave its run to the next one
        wandb.finish()


def read_records(path: Path) -> list[pb.Record]:
    """The records of a `.wandb` file (wandb keeps no Python reader): a 7-byte file header,
    then LevelDB-log chunks, each with a 7-byte header (crc, length, type) inside 32 KiB
    blocks; a record too long for its block goes on in FIRST, MIDDLE, LAST chunks."""
    data, block, records, chunk = path.read_bytes(), 32768, [], b""
    assert data[:4] == b":W&B"
    pos = 7
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # the rest of a block too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            records.append(pb.Record.FromString(chunk))
            chunk = b""
    return records


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def read_run(offline_dir: Path) -> dict[str, Any]:
    """Id, name, group, tags, config, history rows and artifacts of an offline run."""
    (path,) = offline_dir.glob("run-*.wandb")
    run: dict[str, Any] = {"config": {}, "history": [], "artifacts": []}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.update(id=r.run_id, name=r.display_name, group=r.run_group, tags=list(r.tags))
            run["config"].update({_key(i): json.loads(i.value_json) for i in r.config.update})
        elif kind == "config":
            run["config"].update({_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            run["history"].append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "artifact":
            run["artifacts"].append(record.artifact)
    return run


def offline_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def test_training_run_logs_config_metrics_samples_and_checkpoints(tmp_path: Path) -> None:
    cfg = compose_config(
        tmp_path, [*TINY_GPT, *FAST, "model.pos=rope", "seed=1", "logger.wandb.log_model=true"]
    )
    result = train(cfg)
    assert wandb.run is None  # finished by train()

    (offline_dir,) = offline_runs(tmp_path)
    run = read_run(offline_dir)
    assert run["name"] == "gpt-toy_lm-rope-s1"
    assert run["group"] == "train"  # no experiment, no multirun: the task name
    assert run["tags"] == ["dev", "gpt", "toy_lm"]

    config = run["config"]  # the resolved config at the top, as on the command line
    assert config["model"]["pos"] == "rope" and config["model"]["d_model"] == 32
    assert config["trainer"]["limit_train_batches"] == 2 and config["seed"] == 1
    assert config["choices"]["model"] == "gpt" and config["choices"]["data"] == "toy_lm"
    assert config["parameters"] == result["parameters"]

    logged = {key: value for row in run["history"] for key, value in row.items()}
    assert math.isfinite(logged["val/loss"]) and math.isfinite(logged["test/loss"])
    assert logged["samples/_type"] == "table-file"  # SampleText's wandb.Table
    (table,) = offline_dir.glob("files/media/table/samples_*.table.json")
    assert json.loads(table.read_text())["columns"] == ["step", "prompt", "sample"]
    assert (tmp_path / "samples" / "step_0000002.txt").is_file()  # the text file stays

    checkpoints = [a for a in run["artifacts"] if a.type == "model"]
    assert {a.name for a in checkpoints} == {f"model-{run['id']}"}
    assert any("best" in a.aliases for a in checkpoints)


def test_multirun_jobs_get_their_own_runs_in_one_group(tmp_path: Path) -> None:
    out = run_cli("attnlab-train", "-m", "seed=1,2", *TINY_SETUP, *FAST, cwd=tmp_path)
    (sweep_dir,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    offline_dirs = [offline_runs(sweep_dir / job) for job in ("0", "1")]
    assert [len(dirs) for dirs in offline_dirs] == [1, 1]
    runs = [read_run(dirs[0]) for dirs in offline_dirs]

    assert runs[0]["id"] != runs[1]["id"]
    assert runs[0]["group"] == runs[1]["group"] == sweep_dir.name
    assert [run["name"] for run in runs] == ["encdec-reverse-s1", "encdec-reverse-s2"]
    assert [run["config"]["seed"] for run in runs] == [1, 2]
    for run, dirs in zip(runs, offline_dirs, strict=True):
        assert any("val/loss" in row for row in run["history"])
        assert f"wandb sync {dirs[0]}" in out.stdout + out.stderr


@pytest.mark.parametrize(
    ("choices", "knobs", "seed", "name"),
    [
        ({"model": "gpt", "data": "sst2"}, {"pos": "rope"}, 1, "gpt-sst2-rope-s1"),
        ({"model": "encdec", "data": "reverse", "experiment": None}, {}, 0, "encdec-reverse-s0"),
        ({"model": "bert", "data": "toy_mlm"}, {"pooling": "mean"}, None, "bert-toy_mlm-meanpool"),
        (
            {"model": "gpt", "data": "toy_lm"},
            {"norm": "rmsnorm", "norm_first": False, "n_kv_heads": 1, "qk_norm": True},
            3,
            "gpt-toy_lm-rmsnorm-postln-kv1-qknorm-s3",
        ),
        (
            {"model": "gpt", "data": "toy_lm"},
            {"pos": "none", "bias": False},
            2,
            "gpt-toy_lm-nopos-nobias-s2",
        ),
    ],
)
def test_run_name(choices: dict, knobs: dict, seed: int | None, name: str) -> None:
    assert run_name(choices, knobs, seed) == name


def test_name_lists_the_knobs_that_differ_from_the_model_defaults(tmp_path: Path) -> None:
    cfg = compose_config(
        tmp_path, ["model=gpt", "model.norm=rmsnorm", "model.pos=rope", "model.dropout=0.3"]
    )
    assert changed_knobs(cfg.model, "gpt") == {"pos": "rope", "norm": "rmsnorm"}  # in knob order
    default = compose_config(tmp_path, ["model=gpt", "model.pos=learned"])  # as gpt.yaml says
    assert changed_knobs(default.model, "gpt") == {}
    assert changed_knobs(cfg.model, "not_a_model_option") == {}


def test_group_is_the_experiment_else_the_task_name(tmp_path: Path) -> None:
    compose_config(tmp_path, [])
    assert run_group({"experiment": "bert_sst2"}, "train") == "bert_sst2"
    assert run_group({"experiment": None}, "train") == "train"


@pytest.fixture
def no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No API key, an empty home and no netrc, WANDB_MODE unset."""
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    return home


def test_offline_without_credentials_and_sync_command_printed(
    tmp_path: Path, no_credentials: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = compose_config(tmp_path, [*TINY_SETUP, "logger=wandb"])
    (logger,) = build.build_loggers(cfg)
    assert logger.experiment.offline
    logger.log_metrics({"val/loss": 1.0}, step=0)
    sync_dir = Path(logger.experiment.settings.sync_dir).resolve()
    with caplog.at_level(logging.INFO, logger="attnlab.loggers"):
        finish_wandb([logger])
    assert wandb.run is None
    assert f"wandb sync {sync_dir}" in caplog.text
    assert sync_dir.parent == tmp_path / "wandb" and sync_dir.name.startswith("offline-run-")


def test_credentials_and_an_explicit_mode_are_respected(
    tmp_path: Path, no_credentials: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = compose_config(tmp_path, ["logger=wandb"])
    mode = lambda: wandb_arguments(cfg, cfg.logger.wandb, {}).get("mode")  # noqa: E731
    assert not has_wandb_credentials() and mode() == "offline"

    (no_credentials / ".netrc").write_text("machine api.example.com login user password key\n")
    assert not has_wandb_credentials()  # another host's key
    (no_credentials / ".netrc").write_text("machine api.wandb.ai login user password " + "k" * 40)
    assert has_wandb_credentials() and mode() is None
    (no_credentials / ".netrc").unlink()

    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert has_wandb_credentials() and mode() is None
    monkeypatch.delenv("WANDB_API_KEY")

    monkeypatch.setenv("WANDB_MODE", "online")  # explicitly asked for: wandb's business
    assert mode() is None
