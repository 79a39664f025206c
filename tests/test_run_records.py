"""A run folder's checkpoints after harder faults (issue 31): saves killed mid-write leave no
temporary file for good, and a copied run folder resumes into its own best.ckpt and last.ckpt."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import torch

from attnlab.run.api import train
from tests.conftest import TINY


def test_saves_killed_mid_write_are_removed_at_the_next_start(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train([*TINY, f"hydra.run.dir={run}"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # what atomic_path leaves when its process is killed between write and rename
        orphans = [
            run / "checkpoints" / f".{n}.ckpt.{dead.pid}.0badcafe.tmp" for n in ("last", "best")
        ]
        writing = run / "checkpoints" / f".last.ckpt.{live.pid}.0badcafe.tmp"
        for path in (*orphans, writing):
            path.write_bytes(b"half a checkpoint")
        train([*TINY, f"resume={run}", "trainer.max_epochs=2"])
        assert not any(path.exists() for path in orphans)
        assert writing.exists()  # its process still runs: not ours to remove
    finally:
        live.kill()
        live.wait()


def test_a_copied_run_folder_resumes_into_its_own_files(tmp_path: Path) -> None:
    original, copy = tmp_path / "original", tmp_path / "copy"
    first = train([*TINY, f"hydra.run.dir={original}"])
    shutil.copytree(original, copy)
    train([*TINY, f"resume={copy}", "trainer.max_epochs=2"])
    assert sorted(p.name for p in (copy / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    state = torch.load(copy / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]
    (checkpointing,) = [v for k, v in state.items() if k.startswith("ModelCheckpoint")]
    # the best score survived the move: the copy's best is at most the original's
    assert checkpointing["best_model_path"] == str(copy / "checkpoints" / "best.ckpt")
    assert float(checkpointing["best_model_score"]) <= first.metrics["val/loss"] + 1e-6
    assert sorted(p.name for p in (original / "checkpoints").iterdir()) == [
        "best.ckpt",
        "last.ckpt",
    ]  # the original folder is left as it was
