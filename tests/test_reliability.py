"""Never lose work: resume=auto, kill-and-resume, SIGTERM, NaN loss, resumable data order."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from attnlab.callbacks import NonFiniteLossError
from attnlab.data.loading.resumable import EpochShuffleSampler, ResumableDataLoader
from attnlab.run.folder import RunFolderError
from attnlab.run.train import SIGTERM_EXIT_CODE, train
from attnlab.tasks.seq2seq import Seq2SeqTask
from tests.conftest import TINY, TINY_SETUP, compose_config, run_cli

# Deterministic tiny CPU run: 8 steps an epoch, 4 epochs, a checkpoint every 3 steps.
RUN = [
    *TINY_SETUP,
    "trainer.max_epochs=4",
    "trainer.deterministic=true",
    "model.dropout=0",
    "+callbacks.model_checkpoint.every_n_train_steps=3",
    "trainer.log_every_n_steps=1",  # a metrics.csv row every step: the history to compare
    "seed=0",
]
# Columns that measure the machine, not the run.
TIMING_COLUMNS = {"progress/wall_time_s", "train/tokens_per_sec"}


def test_resumable_loader_replays_epoch_and_skips_seen_batches() -> None:
    def loader() -> ResumableDataLoader:
        return ResumableDataLoader(list(range(20)), batch_size=4, sampler=EpochShuffleSampler(20))

    first = loader()
    first.sampler.set_epoch(2)
    iterator = iter(first)
    seen = [next(iterator).tolist() for _ in range(2)]
    state = first.state_dict()
    assert state == {"epoch": 2, "batches": 2}
    rest = [b.tolist() for b in iterator]
    resumed = loader()
    resumed.load_state_dict(state)
    assert [b.tolist() for b in resumed] == rest
    assert resumed.state_dict()["batches"] == 5
    # A finished epoch skips nothing of the next one.
    resumed.load_state_dict({"epoch": 2, "batches": 5})
    resumed.sampler.set_epoch(3)
    assert sum(len(b) for b in resumed) == 20 and seen


ROOT = Path(__file__).resolve().parents[1]


def start_run(
    run_dir: Path, *extra: str, kill_at: str = "", slow_from: int | None = None
) -> subprocess.Popen:
    """attnlab-train in a subprocess; `kill_at`: where tests/kill_points.py SIGKILLs it;
    `slow_from`: from this step on each step takes 0.5 s longer (for a kill from outside)."""
    executable = Path(sys.executable).parent / "attnlab-train"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
        "ATTNLAB_KILL_AT": kill_at,
        "ATTNLAB_STEP_DELAY": "0.5" if slow_from is not None else "",
        "ATTNLAB_DELAY_FROM": str(slow_from or 0),
    }
    if kill_at or slow_from is not None:
        extra = (*extra, "+callbacks.kill._target_=tests.kill_points.KillAt")
    return subprocess.Popen(
        [str(executable), *RUN, f"hydra.run.dir={run_dir}", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_step(run_dir: Path, step: int, process: subprocess.Popen) -> None:
    """Until last.ckpt holds at least `step` (read through a copy: it may be replaced)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while time.time() < deadline:
        assert process.poll() is None, process.stdout.read()
        if last.is_file():
            try:
                if torch.load(last, weights_only=False)["global_step"] >= step:
                    return
            except Exception:  # replaced while reading: try again
                pass
        time.sleep(0.05)
    raise AssertionError("no checkpoint in time")


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def read_history(run_dir: Path) -> list[dict[str, float]]:
    """metrics.csv's rows in order, each as its non-empty values, timing columns left out."""
    with (run_dir / "csv" / "metrics.csv").open(newline="") as file:
        return [
            {key: float(value) for key, value in row.items() if value and key not in TIMING_COLUMNS}
            for row in csv.DictReader(file)
        ]


# Where each attempt dies, in order; the run has 8 steps an epoch, validation and best.ckpt at
# each epoch end, last.ckpt every 3 steps and after each validation. "external" is a SIGKILL
# from this test once last.ckpt reaches step 27 (whenever the poll sees it).
KILL_POINTS = [
    "save:last.ckpt:3",  # the first checkpoint, mid-epoch 0
    "validation_end:8",  # a new best computed, nothing saved: resumes at step 6
    # The epoch-end save, before the epoch's train/acc is logged: resumes at epoch 1, which
    # must log epoch 0's row and start its own metrics afresh.
    "save:last.ckpt:8",
    "save:best.ckpt:16",  # between best.ckpt and last.ckpt: resumes from best.ckpt
    "batch_end:24",  # an epoch's last step, before its validation: resumes at step 21
    # Mid-epoch 3, after epoch 2 ended and was logged: resumes from the epoch-end save at 24.
    "batch_end:26",
    "external",
    "save:last.ckpt:32",  # training done, metrics.json not written: resumes to test only
]


@pytest.mark.slow
def test_sigkill_then_resume_auto_matches_uninterrupted_run(tmp_path: Path) -> None:
    """SIGKILL at several points, the hard ones included, resuming each time with
    resume=<run dir>: metrics.json matches an uninterrupted run's (every metric within 1e-6
    absolute; in practice bit-identical), as do the global step, tokens seen, the chosen
    best checkpoint's step and the whole metrics.csv history, each row exactly once; after
    every kill no metrics.json and every checkpoint loads."""
    reference = tmp_path / "reference"
    run_cli("attnlab-train", *RUN, f"hydra.run.dir={reference}", cwd=tmp_path)
    expected = read_metrics(reference)

    run_dir = tmp_path / "killed"
    for attempt, point in enumerate(KILL_POINTS):
        extra = [f"resume={run_dir}"] if attempt else []
        if point == "external":  # steps from 27 on slowed: the kill lands before step 32
            process = start_run(run_dir, *extra, slow_from=27)
        else:
            process = start_run(run_dir, *extra, kill_at=point)
        if point == "external":
            wait_for_step(run_dir, 27, process)
            process.send_signal(signal.SIGKILL)
        output, _ = process.communicate(timeout=120)
        assert process.returncode == -signal.SIGKILL, f"{point}: {output[-3000:]}"
        assert not (run_dir / "metrics.json").exists()
        for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):
            torch.load(ckpt, weights_only=False)  # complete, never half-written
    # resume=<run> alone: the run's original overrides (RUN, and the kill callback, dropped
    # here) are read back from its .hydra/overrides.yaml
    run_cli("attnlab-train", f"resume={run_dir}", "~callbacks.kill", cwd=tmp_path)
    got = read_metrics(run_dir)
    assert got["global_step"] == expected["global_step"] == 32
    assert got["tokens_seen"] == expected["tokens_seen"]
    assert set(got["metrics"]) == set(expected["metrics"])
    for name, value in expected["metrics"].items():
        if name not in TIMING_COLUMNS:
            assert got["metrics"][name] == pytest.approx(value, abs=1e-6), name
    best = [
        torch.load(d / "checkpoints" / "best.ckpt", weights_only=False)
        for d in (reference, run_dir)
    ]
    assert best[0]["global_step"] == best[1]["global_step"]
    history, expected_history = read_history(run_dir), read_history(reference)
    assert len(history) == len(expected_history)
    for row, expected_row in zip(history, expected_history, strict=True):
        assert row == pytest.approx(expected_row, abs=1e-6)


@pytest.mark.slow
def test_sigterm_saves_last_checkpoint_and_resume_finishes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    process = start_run(run_dir)
    wait_for_step(run_dir, 3, process)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == SIGTERM_EXIT_CODE, output
    assert "Stopped by SIGTERM" in output and f"resume={run_dir}" in output
    stopped = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert stopped["global_step"] >= 3 and "rng_states" in stopped
    run_cli("attnlab-train", *RUN, "resume=auto", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert read_metrics(run_dir)["global_step"] == 32


def nan_at_step(monkeypatch: pytest.MonkeyPatch, bad_steps: set[int]) -> None:
    """The training loss is NaN whenever the optimiser has taken one of `bad_steps` steps."""
    original = Seq2SeqTask.step
    calls = {"n": 0}

    def step(self, network, batch, stage):
        loss = original(self, network, batch, stage)
        if stage == "train":
            calls["n"] += 1
            if calls["n"] - 1 in bad_steps:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(Seq2SeqTask, "step", step)


def test_nan_loss_stops_with_step_and_saves_last_good_state(
    train_config, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch
) -> None:
    """NanGuard checks on the device and reads the outcome at logging steps: here the epoch's
    last batch (8 batches, log_every_n_steps=20). From the bad step on no step is taken, so
    last.ckpt holds the weights and optimiser state of a run stopped before step 5."""
    nan_at_step(monkeypatch, {5})
    with pytest.raises(NonFiniteLossError, match=r"step 5 \(epoch 0, batch 5\)"):
        train(train_config("trainer.max_epochs=2"))
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 8  # saved at the check, after batch 7
    reference_dir = tmp_path_factory.mktemp("five_steps")
    train(compose_config(reference_dir, [*TINY, "trainer.max_steps=5", "test=false"]))
    reference = torch.load(reference_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert reference["global_step"] == 5
    torch.testing.assert_close(last["state_dict"], reference["state_dict"], rtol=0, atol=0)
    torch.testing.assert_close(
        last["optimizer_states"][0]["state"], reference["optimizer_states"][0]["state"]
    )


def test_nan_loss_skip_policy_drops_the_batch(
    train_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nan_at_step(monkeypatch, {2, 9})
    result = train(train_config("trainer.max_epochs=2", "callbacks.nan_guard.policy=skip"))
    assert result["global_step"] == 16
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())


def test_resume_auto_without_checkpoint_starts_fresh_and_rejects_both(train_config) -> None:
    assert train(train_config("resume=auto"))["global_step"] == 8
    with pytest.raises(ValueError, match="not both"):
        train(train_config("resume=auto", "ckpt_path=/nonexistent.ckpt"))


def test_failed_run_in_a_finished_run_dir_overwrites_nothing(train_config, tmp_path: Path) -> None:
    """A second run started (without resume) in a finished run's directory is refused before
    any work, and every file of the first run stays byte for byte (docs/reliability.md, "A
    run folder is append-only")."""
    train(train_config())
    before = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    assert tmp_path / "metrics.json" in before
    with pytest.raises(RunFolderError, match=r"already holds a run.*resume="):
        train(train_config("optimizer.lr=1e10"))
    assert {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()} == before


def _state_size(guard: object) -> int:
    """Elements the guard holds: tensor elements, container lengths, one per other value."""
    size = 0
    for value in vars(guard).values():
        if isinstance(value, torch.Tensor):
            size += value.numel()
        elif isinstance(value, dict | list | tuple | set):
            size += len(value)
        else:
            size += 1
    return size


def test_nan_guard_state_stays_bounded_over_1000_finite_steps() -> None:
    """NanGuard keeps where the first bad loss was on the device, not a record per step: its
    state after 1,000 finite steps (no check in between) is as big as after 10."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from attnlab.callbacks import NanGuard

    class Regression(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(3, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    sizes: dict[int, int] = {}

    class Measure(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if batch_idx + 1 in (10, 1000):
                sizes[batch_idx + 1] = _state_size(guard)

    guard = NanGuard()
    x = torch.randn(1000, 3)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        log_every_n_steps=5000,  # no logging step, so no check, before the epoch's end
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[guard, Measure()],
    )
    trainer.fit(Regression(), DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=1))
    assert trainer.global_step == 1000
    assert sizes[1000] == sizes[10], sizes
