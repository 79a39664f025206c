"""last.ckpt without a second write when it equals best.ckpt, and asynchronous saves
(async_checkpoint=true): both keep every checkpoint whole, checksummed and atomically replaced."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from attnlab.run import resume_checkpoint
from attnlab.run.artefacts import ArtefactWriteError
from attnlab.run.checkpoint_io import (
    AsyncAtomicCheckpointIO,
    AtomicCheckpointIO,
    link_checkpoint,
    read_checkpoint,
)
from attnlab.run.train import SIGTERM_EXIT_CODE, train
from tests.test_checkpoint_integrity import resume_cfg
from tests.test_reliability import start_run, wait_for_step


def payload(seed: int) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(seed)
    return {"state_dict": {"w": torch.randn(64, 64, generator=generator)}, "global_step": seed}


def test_a_later_best_leaves_a_linked_last_as_it_was(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    io.save_checkpoint(payload(1), best)
    io.link_checkpoint(best, last)
    assert os.path.samefile(best, last)  # one file, written once
    io.save_checkpoint(payload(2), best)  # a new best: a new file renamed over best.ckpt
    assert read_checkpoint(best)["global_step"] == 2
    old = read_checkpoint(last)  # checksum verified
    assert old["global_step"] == 1
    torch.testing.assert_close(old["state_dict"]["w"], payload(1)["state_dict"]["w"])
    io.save_checkpoint(payload(3), last)  # a full last.ckpt replaces the link, not best.ckpt
    assert read_checkpoint(best)["global_step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt"]


def test_a_failed_link_leaves_the_old_last(tmp_path: Path, monkeypatch) -> None:
    io = AtomicCheckpointIO()
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    io.save_checkpoint(payload(1), best)
    io.save_checkpoint(payload(5), last)

    def interrupted(source: Any, target: Any) -> None:
        Path(target).write_bytes(Path(source).read_bytes()[:100])  # a half-written copy
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "link", lambda source, target: (_ for _ in ()).throw(OSError()))
    monkeypatch.setattr("shutil.copyfile", interrupted)
    with pytest.raises(KeyboardInterrupt):
        link_checkpoint(best, last)
    assert read_checkpoint(last)["global_step"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt"]


def test_without_hard_links_last_is_a_verified_copy(tmp_path: Path, monkeypatch) -> None:
    def no_links(source: Any, target: Any) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    io = AtomicCheckpointIO()
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    io.save_checkpoint(payload(4), best)
    io.link_checkpoint(best, last)
    assert not os.path.samefile(best, last)
    assert read_checkpoint(last)["global_step"] == 4


def test_async_save_writes_the_state_of_the_call_in_order(tmp_path: Path) -> None:
    io = AsyncAtomicCheckpointIO()
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    content = payload(7)
    expected = content["state_dict"]["w"].clone()
    io.save_checkpoint(content, best)
    content["state_dict"]["w"].add_(1.0)  # the next optimiser step, while the thread writes
    io.link_checkpoint(best, last)  # after the save it follows
    io.teardown()  # the end of a fit: waits for both
    torch.testing.assert_close(read_checkpoint(best)["state_dict"]["w"], expected)
    assert os.path.samefile(best, last)
    io.save_checkpoint(payload(8), best)  # usable again after a teardown (fit, then test)
    assert io.load_checkpoint(best)["global_step"] == 8  # a read waits for pending saves
    io.teardown()


def test_async_save_failure_is_raised_in_the_training_thread(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    io = AsyncAtomicCheckpointIO()
    with pytest.raises(ArtefactWriteError, match="not_a_dir"):  # at this call or the next
        io.save_checkpoint(payload(1), blocker / "best.ckpt")
        io.wait()


class CheckpointsAfterEpochs(pl.Callback):
    """After each epoch's validation and RunCheckpoint's saves: which step best.ckpt and
    last.ckpt hold, and whether they are one file."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.io_type: type | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.io_type = type(trainer.strategy.checkpoint_io)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch > 0:  # after the previous epoch's validation and saves
            self._record(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(trainer)

    def _record(self, trainer: pl.Trainer) -> None:
        io = trainer.strategy.checkpoint_io
        if hasattr(io, "wait"):
            io.wait()
        folder = Path(trainer.checkpoint_callback.dirpath)
        best, last = folder / "best.ckpt", folder / "last.ckpt"
        self.seen.append(
            {
                "step": trainer.global_step,
                "best": read_checkpoint(best)["global_step"],
                "last": read_checkpoint(last)["global_step"],
                "linked": os.path.samefile(best, last),
            }
        )


@pytest.mark.parametrize("asynchronous", [False, True])
def test_last_links_to_a_best_of_the_same_step_only(train_config, asynchronous: bool) -> None:
    """optimized_mode=max on val/loss: the first validation is best, later (lower) ones are
    not, so both cases occur."""
    cfg = train_config(
        "trainer.max_epochs=3", "optimized_mode=max", f"async_checkpoint={asynchronous}"
    )
    watch = CheckpointsAfterEpochs()
    result = train(cfg, extra_callbacks=[watch])
    expected_io = AsyncAtomicCheckpointIO if asynchronous else AtomicCheckpointIO
    assert watch.io_type is expected_io
    assert len(watch.seen) == 3
    for seen in watch.seen:
        assert seen["last"] == seen["step"]
        assert seen["linked"] == (seen["best"] == seen["step"]), watch.seen
    assert {s["linked"] for s in watch.seen} == {True, False}, watch.seen
    assert "test/loss" in result["metrics"]
    # A resume takes the newest (last.ckpt) and continues.
    folder = Path(cfg.paths.output_dir)
    assert resume_checkpoint(resume_cfg(folder)) == str(folder / "checkpoints" / "last.ckpt")


@pytest.mark.slow
def test_a_kill_during_an_async_save_leaves_whole_checkpoints(tmp_path: Path) -> None:
    """SIGKILL right after best.ckpt's save was handed to the thread (the write in flight):
    every checkpoint on disk reads and matches its checksum, and a resume finishes."""
    run_dir = tmp_path / "run"
    process = start_run(run_dir, "async_checkpoint=true", kill_at="save:best.ckpt:16")
    output, _ = process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL, output[-3000:]
    found = list((run_dir / "checkpoints").glob("*.ckpt"))
    assert found
    for path in found:
        read_checkpoint(path)
    process = start_run(run_dir, "async_checkpoint=true", "resume=auto")
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 32


@pytest.mark.slow
def test_sigterm_with_async_saves_waits_for_last_ckpt(tmp_path: Path) -> None:
    """The SIGTERM save goes to the thread; the process exits only once it is on disk."""
    run_dir = tmp_path / "run"
    process = start_run(run_dir, "async_checkpoint=true")
    wait_for_step(run_dir, 3, process)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == SIGTERM_EXIT_CODE, output[-3000:]
    stopped = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert stopped["global_step"] >= 3 and "rng_states" in stopped
