"""Callbacks that the distributed tests add to real `attnlab-train` runs from the command line
(`+callbacks.probe._target_=tests.distributed_helpers.RankProbe`, with the repo on PYTHONPATH)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


class RankProbe(pl.Callback):
    """Each rank writes `<run dir>/rank<N>.json`: where it ran, in which world, with which seed,
    and the training windows it was given (as lists of token ids)."""

    def __init__(self) -> None:
        self.rows: list[list[int]] = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.rows += batch["input_ids"].tolist()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "seed": os.environ.get("PL_GLOBAL_SEED"),
            "root_dir": str(trainer.default_root_dir),
            "rows": self.rows,
        }
        path = Path(trainer.default_root_dir) / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(record))


class KillRank(pl.Callback):
    """Fault injection: after training step `step`, rank `rank` dies (`how=exit`: os._exit, no
    clean-up) or hangs (`how=hang`: sleeps, out of every collective).

    Every rank first writes its pid to `<pid_dir>/rank<N>.pid`, so a test can check that no
    process outlives the job.
    """

    def __init__(self, rank: int, step: int, pid_dir: str, how: str = "exit") -> None:
        self.rank = rank
        self.step = step
        self.pid_dir = Path(pid_dir)
        self.how = how

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        (self.pid_dir / f"rank{trainer.global_rank}.pid").write_text(str(os.getpid()))

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.global_rank == self.rank and trainer.global_step >= self.step:
            if self.how == "hang":
                time.sleep(3600)
            os._exit(17)
