"""Write the decoded validation and test hypotheses of each epoch to the run directory."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only


class Hypotheses(pl.Callback):
    """`<run dir>/hypotheses/val_epoch<N>.txt` for each validation and `test.txt`: one
    hypothesis a line, in corpus order.

    Works with a task that has `keep_hypotheses` and `hypotheses` (Seq2SeqTask). Batches that
    carry `index` are put back in corpus order, so the file lines up with the reference file.
    Under DDP the file holds rank zero's share only.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if hasattr(pl_module.task, "keep_hypotheses"):
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
        hypotheses = getattr(pl_module.task, "hypotheses", None)
        if hypotheses is not None:
            hypotheses[stage] = []

    @rank_zero_only
    def _write(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        pairs = getattr(pl_module.task, "hypotheses", {}).get(stage)
        if not pairs:
            return
        if all(index is not None for index, _ in pairs):
            pairs = sorted(pairs, key=lambda pair: pair[0])
        out_dir = Path(trainer.default_root_dir) / "hypotheses"
        out_dir.mkdir(parents=True, exist_ok=True)
        text = "".join(text.replace("\n", " ") + "\n" for _, text in pairs)
        # The test runs once, on whichever checkpoint was picked: its epoch says little.
        name = f"val_epoch{trainer.current_epoch}.txt" if stage == "val" else f"{stage}.txt"
        (out_dir / name).write_text(text, encoding="utf-8")
