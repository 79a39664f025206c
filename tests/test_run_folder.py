"""A run folder is append-only (docs/reliability.md): a second run in a used folder is refused,
each attempt's configs are kept, `resume=<run>` alone is enough, a lock stops two writers."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from attnlab.run import ConfigError
from attnlab.run.artefacts import write_failure
from attnlab.run.folder import RunFolderError, RunFolderLock
from attnlab.run.resume_overrides import (
    merge_overrides,
    original_overrides,
    with_original_overrides,
)
from attnlab.run.train import train
from tests.conftest import TINY, run_cli


def files(folder: Path) -> dict[Path, bytes]:
    """Every file under `folder`, with its bytes."""
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def overrides(path: Path) -> list[str]:
    return yaml.safe_load(path.read_text())


# ---- the command line: refused, extended, refused again ----------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run, with overrides a resume must read back (scheduler=cosine:
    without it a resume gave `KeyError: 'lr_lambdas'`)."""
    run = tmp_path_factory.mktemp("folders") / "run"
    run_cli("attnlab-train", *TINY, "scheduler=cosine", f"hydra.run.dir={run}", cwd=run.parent)
    return run


def test_second_run_in_a_used_folder_is_refused_and_replaces_nothing(
    finished_run: Path, tmp_path: Path
) -> None:
    """Defect 1: a second run in a finished run's folder replaced .hydra/*.yaml and
    csv/hparams.yaml and deleted csv/metrics.csv."""
    run = tmp_path / "run"
    subprocess.run(["cp", "-a", str(finished_run), str(run)], check=True)
    before = files(run)
    assert {run / ".hydra" / "config.yaml", run / "csv" / "metrics.csv"} <= set(before)
    result = run_cli(
        "attnlab-train", *TINY, "optimizer.lr=1e10", f"hydra.run.dir={run}", cwd=tmp_path,
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"hydra.run.dir={run} already holds a run" in result.stderr
    assert f"attnlab-train resume={run}" in result.stderr
    assert files(run) == before  # byte for byte; no failure.json, no .hydra/attempt-2


@pytest.mark.slow  # two training runs (~50 s): default-suite time (issue 28)
def test_resume_alone_extends_a_run_and_keeps_each_attempts_configs(
    finished_run: Path, tmp_path: Path
) -> None:
    """`resume=<run>` alone reads the run's original overrides; `trainer.max_epochs=2` given
    now extends it. The first attempt's .hydra/ stays as it was; the resume's configs go to
    .hydra/attempt-2/."""
    run = tmp_path / "run"
    subprocess.run(["cp", "-a", str(finished_run), str(run)], check=True)
    original = {p: b for p, b in files(run).items() if p.parent == run / ".hydra"}
    run_cli("attnlab-train", f"resume={run}", "trainer.max_epochs=2", cwd=tmp_path)
    assert json.loads((run / "metrics.json").read_text())["global_step"] == 16
    assert {p: p.read_bytes() for p in original} == original
    attempt = overrides(run / ".hydra" / "attempt-2" / "overrides.yaml")
    assert "scheduler=cosine" in attempt and "model.d_model=32" in attempt
    assert attempt[-2:] == [f"resume={run}", "trainer.max_epochs=2"]
    assert "trainer.max_epochs=1" not in attempt

    # A resume that changes the model is refused, naming the key and both values; it adds
    # its own attempt's configs and nothing else.
    before = files(run)
    result = run_cli(
        "attnlab-train", f"resume={run}", "model.d_model=64", cwd=tmp_path, check=False
    )
    assert result.returncode != 0
    assert "model.d_model was 32 in the run" in result.stderr and "is 64 now" in result.stderr
    after = files(run)
    assert {p: after[p] for p in before} == before
    assert {p.relative_to(run).parent for p in set(after) - set(before)} == {
        Path(".hydra/attempt-3")
    }
    # The next resume reads the latest attempt that started work (the extension to 2 epochs),
    # not the refused one (d_model=64) nor the first.
    assert (run / ".hydra" / "attempt-2" / "started").is_file()
    assert not (run / ".hydra" / "attempt-3" / "started").exists()
    assert original_overrides(run) == attempt


def test_a_bad_value_for_a_used_folder_writes_nothing_there(
    finished_run: Path, tmp_path: Path
) -> None:
    """A value refused by the checks, given for another run's folder: the folder is refused
    first, so no failure.json lands there (attnlab-compare would call that run failed)."""
    run = tmp_path / "run"
    subprocess.run(["cp", "-a", str(finished_run), str(run)], check=True)
    before = files(run)
    result = run_cli(
        "attnlab-train", *TINY, "optimizer.lr=abc", f"hydra.run.dir={run}", cwd=tmp_path,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"attnlab: hydra.run.dir={run}")
    assert files(run) == before


def test_a_resume_takes_the_overrides_of_the_latest_attempt_that_ran(tmp_path: Path) -> None:
    hydra_dir = tmp_path / ".hydra"
    for name, lines, started in [
        (".", ["model.d_model=32"], False),
        ("attempt-2", ["model.d_model=32", "resume=x", "trainer.max_epochs=4"], True),
        ("attempt-10", ["model.d_model=32", "resume=x", "trainer.max_epochs=6"], True),
        ("attempt-11", ["model.d_model=32", "resume=x", "optimizer.lr=abc"], False),  # refused
    ]:
        (hydra_dir / name).mkdir(parents=True, exist_ok=True)
        (hydra_dir / name / "overrides.yaml").write_text(yaml.safe_dump(lines))
        if started:
            (hydra_dir / name / "started").write_text("")
    assert original_overrides(tmp_path)[-1] == "trainer.max_epochs=6"
    refused_first = tmp_path / "refused_first" / ".hydra"
    refused_first.mkdir(parents=True)
    (refused_first / "overrides.yaml").write_text(yaml.safe_dump(["optimizer.lr=abc"]))
    (refused_first / "refused").write_text("optimizer.lr='abc' is not valid\n")
    assert original_overrides(refused_first.parent) == []  # nothing ran there to resume


def test_train_twice_in_one_folder_is_refused_but_resume_auto_continues(
    train_config, tmp_path: Path
) -> None:
    train(train_config())
    before = files(tmp_path)
    with pytest.raises(RunFolderError, match="already holds a run"):
        train(train_config("seed=2"))
    assert files(tmp_path) == before
    assert train(train_config("resume=auto", "trainer.max_epochs=2"))["global_step"] == 16
    assert not (tmp_path / ".hydra").exists()  # the Python API writes no Hydra configs


def test_resume_changing_the_scheduler_class_is_refused(train_config) -> None:
    """Was `KeyError: 'lr_lambdas'` from deep inside Lightning."""
    train(train_config("scheduler=cosine"))
    with pytest.raises(RunFolderError, match=r"scheduler\._target_ was .*cosine.* now"):
        train(train_config("resume=auto", "scheduler=constant", "trainer.max_epochs=2"))


HOLD = """
import sys, time
from pathlib import Path
from attnlab.run.folder_lock import acquire as _acquire
lock, _ = _acquire(Path(sys.argv[1]))  # what a run holds while it writes the folder
print("held", flush=True)
time.sleep(120)
"""


def test_a_run_refuses_a_folder_another_process_writes(train_config, tmp_path: Path) -> None:
    """Defect 6: two runs in one folder at once mixed their records."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderError, match=rf"in use by another run \(pid {holder.pid} on"):
            train(train_config())
        assert not (tmp_path / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: the next run takes its lock over, with a warning.
    assert f"pid {holder.pid}" in (tmp_path / ".lock").read_text()


def test_a_dead_holders_lock_is_taken_over_with_a_warning(
    train_config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(f"pid {dead.pid} on host {socket.gethostname()}\n")
    with caplog.at_level(logging.WARNING):
        train(train_config("resume=auto"))  # the .lock alone marks the folder as used
    assert any(f"taking over the lock of pid {dead.pid}" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / ".lock").exists()  # released: a finished run leaves no lock file


# ---- the pieces --------------------------------------------------------------------------------


def attempt_subdir(folder: Path, resume: str | None) -> str | None:
    """hydra.output_subdir as RunFolderLock sets it before Hydra writes a run's configs; the
    lock is held from then until the run ends (here: at once)."""
    config = OmegaConf.create(
        {"resume": resume, "hydra": {"run": {"dir": str(folder)}, "output_subdir": ".hydra"}}
    )
    callback = RunFolderLock()
    callback.on_run_start(config=config)
    assert (folder / ".lock").read_text().startswith(f"pid {os.getpid()} ")  # held
    callback.on_run_end(config=config)
    assert not (folder / ".lock").exists()  # released, and the file removed
    return config.hydra.output_subdir


def test_attempt_subdirs(tmp_path: Path) -> None:
    fresh, used = tmp_path / "fresh", tmp_path / "used"
    assert attempt_subdir(fresh, None) == ".hydra"
    (used / ".hydra").mkdir(parents=True)
    (used / ".hydra" / "config.yaml").write_text("{}")
    assert attempt_subdir(used, None) is None  # refused: nothing written
    assert attempt_subdir(used, str(used)) == ".hydra/attempt-2"
    assert attempt_subdir(used, "auto") == ".hydra/attempt-3"
    # a folder with checkpoints but no .hydra (a Python API run): refused, and left as it was
    api = tmp_path / "api"
    (api / "checkpoints").mkdir(parents=True)
    assert attempt_subdir(api, None) is None and not (api / ".hydra").exists()
    # only a refused first attempt (its configs, failure.json, the lock file): free, and its
    # configs move aside for the new first attempt's
    leftovers = tmp_path / "leftovers"
    (leftovers / ".hydra").mkdir(parents=True)
    for name in ("config.yaml", "refused"):
        (leftovers / ".hydra" / name).write_text("{}")
    (leftovers / "failure.json").write_text("{}")
    assert attempt_subdir(leftovers, None) == ".hydra"
    assert sorted(p.name for p in (leftovers / ".hydra" / "refused-1").iterdir()) == [
        "config.yaml",
        "refused",
    ]
    assert not (leftovers / ".hydra" / "config.yaml").exists()


def test_a_multirun_into_a_sweep_folder_holding_runs_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    empty = RunFolderLock()
    empty.on_multirun_start(config=config)  # empty: fine, and held until the sweep ends
    assert (tmp_path / ".lock").is_file()
    empty.on_multirun_end(config=config)
    assert not (tmp_path / ".lock").exists()  # a finished sweep leaves no lock file
    (tmp_path / "0" / "checkpoints").mkdir(parents=True)
    # Hydra turns a callback's exception into a warning and sweeps on: the refusal exits
    with pytest.raises(SystemExit) as stopped:
        RunFolderLock().on_multirun_start(config=config)
    assert stopped.value.code == 2
    assert f"hydra.sweep.dir={tmp_path} already holds runs" in capsys.readouterr().err


def test_a_second_sweep_into_a_folder_a_sweep_writes_is_refused(tmp_path: Path) -> None:
    """Two sweeps into one hydra.sweep.dir at once both trained, each failing on a job folder
    the other took, under one multirun.yaml."""
    sweep = tmp_path / "sweep"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(sweep)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"  # as a running sweep holds it
        args = ["-m", "seed=3,4", *TINY, f"hydra.sweep.dir={sweep}"]
        result = run_cli("attnlab-train", *args, cwd=tmp_path, check=False)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"attnlab: hydra.sweep.dir={sweep} is in use by another sweep (pid {holder.pid} on host "
        f"{socket.gethostname()}; lock file {sweep / '.lock'}); wait for it to finish, or leave "
        "hydra.sweep.dir out"
    )
    assert sorted(p.name for p in sweep.iterdir()) == [".lock"]  # no multirun.yaml, no jobs


def test_merge_overrides_keeps_originals_unless_given_again() -> None:
    original = ["experiment=encdec_reverse", "trainer.max_epochs=1", "+callbacks.x.y=1", "seed=3"]
    given = ["resume=/r", "trainer.max_epochs=5", "callbacks.x.y=2"]
    merged = merge_overrides([*original, "resume=auto"], given)
    kept = ["experiment=encdec_reverse", "seed=3"]
    assert merged == [*kept, "resume=/r", "trainer.max_epochs=5", "+callbacks.x.y=2"]
    assert merge_overrides(original, merged) == merged  # DDP ranks re-run the command


def test_resume_of_a_multirun_job_reads_its_sweep_values(tmp_path: Path) -> None:
    job = tmp_path / "multiruns" / "sweep" / "1"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("- model.pos=rope\n- seed=2\n")
    args = ["--config-name", "train", f"resume={job}", "trainer.max_epochs=3"]
    assert with_original_overrides(args) == [
        "--config-name",
        "train",
        "model.pos=rope",
        "seed=2",
        f"resume={job}",
        "trainer.max_epochs=3",
    ]
    assert with_original_overrides(["-m", f"resume={job}"]) == ["-m", f"resume={job}"]


def test_a_later_failure_keeps_the_earlier_one_in_failure_json(tmp_path: Path) -> None:
    write_failure(tmp_path, ValueError("first"))
    write_failure(tmp_path, RuntimeError("second"))
    report = json.loads((tmp_path / "failure.json").read_text())
    assert report["status"] == "failed" and report["error"] == "RuntimeError: second"
    assert [r["error"] for r in report["earlier"]] == ["ValueError: first"]
    (tmp_path / "failure.json").write_text("{cut off")
    write_failure(tmp_path, KeyError("third"))
    report = json.loads((tmp_path / "failure.json").read_text())
    assert report["earlier"] == [{"unreadable": "{cut off"}]


def test_a_refused_resume_leaves_the_finished_run_as_it_was(
    finished_run: Path, tmp_path: Path
) -> None:
    """A bad value given with resume=<finished run> wrote failure.json there: attnlab-compare
    then showed the finished run as failed."""
    run = tmp_path / "run"
    subprocess.run(["cp", "-a", str(finished_run), str(run)], check=True)
    before = files(run)
    result = run_cli(
        "attnlab-train", f"resume={run}", "trainer.max_epochs=abc", cwd=tmp_path, check=False
    )
    assert result.returncode == 2 and "trainer.max_epochs='abc'" in result.stderr
    after = files(run)
    assert {p: after[p] for p in before} == before
    added = {p.relative_to(run) for p in set(after) - set(before)}
    assert added == {
        Path(".hydra/attempt-2") / name for name in ("config.yaml", "hydra.yaml", "overrides.yaml")
    }


def test_a_typo_in_a_new_folder_does_not_take_it_from_the_corrected_command(tmp_path: Path) -> None:
    """A first attempt refused before any work sets its configs aside: the corrected command
    runs in the same folder, and .hydra/ (what attnlab-compare reads) describes that run."""
    run = tmp_path / "run"
    bad = run_cli(
        "attnlab-train", *TINY, "optimizer.lr=abc", f"hydra.run.dir={run}", cwd=tmp_path,
        check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert (run / ".hydra" / "refused").is_file() and (run / "failure.json").is_file()
    assert "optimizer.lr=abc" in overrides(run / ".hydra" / "overrides.yaml")
    run_cli("attnlab-train", *TINY, "optimizer.lr=1e-3", f"hydra.run.dir={run}", cwd=tmp_path)
    assert "optimizer.lr=abc" in overrides(run / ".hydra" / "refused-1" / "overrides.yaml")
    assert "optimizer.lr=1e-3" in overrides(run / ".hydra" / "overrides.yaml")
    assert json.loads((run / "metrics.json").read_text())["status"] == "done"


def test_a_resume_that_finds_no_checkpoint_starts_the_metric_history_afresh(
    train_config, tmp_path: Path
) -> None:
    """A run killed before its first checkpoint: its resume starts from scratch, and so does
    metrics.csv (the killed attempt's rows stood beside the new ones, step for step)."""
    settings = ("trainer.log_every_n_steps=1", "trainer.deterministic=true", "seed=0")
    train(train_config(*settings))
    history = (tmp_path / "csv" / "metrics.csv").read_text()
    shutil.rmtree(tmp_path / "checkpoints")
    (tmp_path / "metrics.json").unlink()
    train(train_config(*settings, "resume=auto"))
    rows = list(csv.DictReader(io.StringIO((tmp_path / "csv" / "metrics.csv").read_text())))
    steps = [(row["step"], tuple(k for k, v in row.items() if v)) for row in rows]
    assert len(steps) == len(set(steps)) == len(list(csv.DictReader(io.StringIO(history))))


def test_python_api_resume_of_a_missing_folder_creates_nothing(
    train_config, tmp_path: Path
) -> None:
    typo = tmp_path / "typo"
    cfg = train_config(f"resume={typo}")
    cfg.paths.output_dir = str(typo)
    with pytest.raises(ConfigError, match=rf"resume={typo} is not valid: no such run directory"):
        train(cfg)
    assert not typo.exists()


def test_ckpt_path_changing_the_scheduler_class_is_refused(train_config, tmp_path: Path) -> None:
    train(train_config("scheduler=cosine"))
    cfg = train_config(f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}", "scheduler=constant")
    cfg.paths.output_dir = str(tmp_path / "continued")
    with pytest.raises(
        RunFolderError, match=r"ckpt_path: scheduler\._target_ was .*init\.pretrained"
    ):
        train(cfg)


def test_a_callback_holding_a_sweep_lock_pickles_without_it(tmp_path: Path) -> None:
    """submitit pickles Hydra's callbacks into each job: the held sweep lock (a FileLock, with
    a thread lock inside) made `hydra/launcher=submitit_local` fail with "cannot pickle
    '_thread.RLock' object"; the job's copy holds no lock, the sweep's process keeps its own."""
    import pickle

    callback = RunFolderLock()
    sweep = tmp_path / "sweep"
    callback.on_multirun_start(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    try:
        assert callback.sweep is not None and callback.sweep.lock is not None
        copy = pickle.loads(pickle.dumps(callback))
        assert copy.sweep is None and copy.attempt is None
        assert callback.sweep.lock.is_locked  # still held here
    finally:
        callback.on_multirun_end(OmegaConf.create({}))
    assert not (sweep / ".lock").exists()
