"""Write the decoded validation and test hypotheses of each epoch to the run directory."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch.distributed as dist

from attnlab.data.loading.atomic import atomic_path
from attnlab.protocols import KeepsHypotheses


class Hypotheses(pl.Callback):
    """`<run dir>/hypotheses/val_epoch<N>.txt` for each validation and `test.txt`: one
    hypothesis a line, in corpus order.

    Works with a task that keeps them (KeepsHypotheses, attnlab/protocols.py: Seq2SeqTask);
    with any other it does nothing. Batches that
    carry `index` are put back in corpus order, so the file lines up with the reference file.
    Under DDP every rank decodes its share; rank zero gathers them all and writes the file
    (an example a sampler repeated to even out the ranks is written once).
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if isinstance(pl_module.task, KeepsHypotheses):
            pl_module.task.keep_hypotheses = True

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._clear(pl_module, "val")

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._clear(pl_module, "test")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._write(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, pl_module, "test")

    @staticmethod
    def _clear(pl_module: pl.LightningModule, stage: str) -> None:
        if isinstance(pl_module.task, KeepsHypotheses):
            pl_module.task.hypotheses[stage] = []

    def _write(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        task = pl_module.task
        pairs = list(task.hypotheses.get(stage) or []) if isinstance(task, KeepsHypotheses) else []
        if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
            shares: list[list[tuple[int | None, str]] | None] = [None] * trainer.world_size
            dist.all_gather_object(shares, pairs)  # every rank must take part
            pairs = [pair for share in shares for pair in share or []]
        if not trainer.is_global_zero or not pairs:
            return
        if all(index is not None for index, _ in pairs):
            pairs = sorted(dict(pairs).items())  # corpus order, each example once
        out_dir = Path(trainer.default_root_dir) / "hypotheses"
        out_dir.mkdir(parents=True, exist_ok=True)
        text = "".join(text.replace("\n", " ") + "\n" for _, text in pairs)
        # The test runs once, on whichever checkpoint was picked: its epoch says little.
        name = f"val_epoch{trainer.current_epoch}.txt" if stage == "val" else f"{stage}.txt"
        with atomic_path(out_dir / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
