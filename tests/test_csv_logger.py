"""metrics.csv holds a run's whole history: kept across processes and resumes, each row once."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import torch
import yaml

from attnlab.csv_logger import RunCSVLogger
from attnlab.run.train import train


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return [{k: v for k, v in row.items() if v} for row in csv.DictReader(file)]


def logger(tmp_path: Path) -> RunCSVLogger:
    return RunCSVLogger(save_dir=tmp_path, name="csv", version="")


def test_a_new_process_appends_to_metrics_csv_and_keeps_old_columns(tmp_path: Path) -> None:
    first = logger(tmp_path)
    first.log_metrics({"train/loss": 2.0}, step=0)
    first.log_metrics({"val/loss": 1.5}, step=0)
    first.save()
    second = logger(tmp_path)  # Lightning's CSVLogger deletes metrics.csv here
    second.log_metrics({"train/acc": 0.25}, step=1)  # a new column: the file is rewritten
    second.save()
    path = tmp_path / "csv" / "metrics.csv"
    assert rows(path) == [
        {"train/loss": "2.0", "step": "0"},
        {"val/loss": "1.5", "step": "0"},
        {"train/acc": "0.25", "step": "1"},
    ]
    assert not list(path.parent.glob(".*partial"))  # rewritten through a renamed copy


def test_resume_keeps_rows_before_the_checkpoint_and_restores_a_missing_one(
    tmp_path: Path,
) -> None:
    first = logger(tmp_path)
    for step in range(6):
        first.log_metrics({"train/loss": float(step)}, step=step)
    first.save()
    resumed = logger(tmp_path)
    # The checkpoint was written at global step 4, before the epoch row of step 3.
    epoch_row = {"epoch": 0, "train/acc": 0.5, "step": 3}
    resumed.resume_at(4, [epoch_row, {"train/loss": 3.0, "step": 3}])  # one written already
    resumed.resume_at(4, [epoch_row])  # a second resume adds nothing
    assert rows(tmp_path / "csv" / "metrics.csv") == [
        *({"train/loss": f"{float(step)}", "step": str(step)} for step in range(4)),
        {"epoch": "0", "train/acc": "0.5", "step": "3"},
    ]


def test_hparams_yaml_of_the_first_attempt_is_kept(tmp_path: Path) -> None:
    logger(tmp_path).log_hyperparams({"lr": 1.0})
    logger(tmp_path).log_hyperparams({"lr": 2.0})
    assert yaml.safe_load((tmp_path / "csv" / "hparams.yaml").read_text()) == {"lr": 1.0}


def test_a_run_resumed_for_more_epochs_has_the_history_of_one_run(train_config) -> None:
    """Train 1 epoch, then resume the same run to 2 epochs: metrics.csv equals that of a run
    trained for 2 epochs at once, row for row (timing columns aside)."""
    settings = ("trainer.deterministic=true", "model.dropout=0", "seed=0")
    settings += ("trainer.log_every_n_steps=1", "callbacks.throughput=null")
    once = train_config(*settings, "trainer.max_epochs=2")
    train(once)
    reference = rows(Path(once.paths.output_dir) / "csv" / "metrics.csv")
    for path in Path(once.paths.output_dir).iterdir():  # the same folder, emptied
        if path.is_dir():
            for file in sorted(path.rglob("*"), reverse=True):
                file.unlink() if file.is_file() else file.rmdir()
            path.rmdir()
        else:
            path.unlink()
    train(train_config(*settings, "trainer.max_epochs=1"))
    train(train_config(*settings, "trainer.max_epochs=2", "resume=auto", "test=true"))
    history = rows(Path(once.paths.output_dir) / "csv" / "metrics.csv")
    timing = ("progress/wall_time_s",)
    strip = [{k: v for k, v in row.items() if k not in timing} for row in history]
    expected = [{k: v for k, v in row.items() if k not in timing} for row in reference]
    # The first attempt's test row (step 8, the resumed checkpoint's step) is superseded.
    assert strip == expected


class SaveAtTrainEnd(pl.Callback):
    """Writes a checkpoint after the last epoch's metrics were logged (and reset)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.save_checkpoint(self.path)


def test_a_checkpoint_after_the_epoch_was_logged_carries_no_pending_row(
    train_config, tmp_path: Path
) -> None:
    """Only what Lightning has yet to log is pending: a save at on_train_end, after the epoch's
    train/acc was logged and reset, carried train/acc=0 from the emptied metric, which a resume
    then put into metrics.json."""
    path = tmp_path / "end.ckpt"
    train(train_config(), extra_callbacks=[SaveAtTrainEnd(path)])
    checkpoint = torch.load(path, weights_only=False)
    assert checkpoint["pending_log_rows"] == []
    assert checkpoint["callback_metrics"]["train/acc"] > 0
