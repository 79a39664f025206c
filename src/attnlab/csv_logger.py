"""metrics.csv that holds a run's whole history: appended across resumes, each row once.

Lightning's CSVLogger deletes an existing metrics.csv when a process starts (a resumed run lost
every earlier row), and rewrites the file in place when a new column appears (a kill during
that rewrite loses it all). Here a resume keeps the rows logged before its checkpoint, drops
those after it (the resumed run logs them again), and every rewrite goes through a temporary
file and an atomic rename.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only


def _replace(path: Path, fieldnames: list[str], rows: list[Mapping[str, Any]]) -> None:
    """Write the CSV to a temporary file beside `path`, then rename it over `path`."""
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)


class AppendingWriter(ExperimentWriter):
    """An ExperimentWriter that continues an existing metrics.csv instead of deleting it."""

    def _check_log_dir_exists(self) -> None:  # Lightning's deletes metrics.csv here
        path = Path(self.metrics_file_path)
        if path.is_file():
            with path.open(newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        _replace(Path(self.metrics_file_path), fieldnames, self.rows())

    def log_hparams(self, params: dict[str, Any]) -> None:
        # hparams.yaml describes the run as first started; each attempt's own config is under
        # .hydra/ (docs/reliability.md).
        if not Path(self.log_dir, self.NAME_HPARAMS_FILE).exists():
            super().log_hparams(params)

    def rows(self) -> list[dict[str, str]]:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return []
        with path.open(newline="") as file:
            return list(csv.DictReader(file))

    def resume_at(self, step: int, pending: Sequence[Mapping[str, Any]] = ()) -> None:
        """Keep the rows logged before step `step` (a resumed run logs the later ones again),
        and add each `pending` row (with its own `step`, before `step`) that the interrupted
        run did not write."""
        rows = [row for row in self.rows() if row.get("step") and int(row["step"]) < step]
        for extra in pending:
            written = any(
                row["step"] == str(extra["step"]) and all(row.get(key) for key in extra)
                for row in rows
            )
            if not written:
                rows.append({key: str(value) for key, value in extra.items()})
        self.metrics_keys = sorted({*self.metrics_keys, *(key for row in rows for key in row)})
        if rows or Path(self.metrics_file_path).exists():
            _replace(Path(self.metrics_file_path), self.metrics_keys, rows)


class RunCSVLogger(CSVLogger):
    """CSVLogger for a run directory that outlives the process (conf/logger/csv.yaml)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def resume_at(self, step: int, pending: Sequence[Mapping[str, Any]] = ()) -> None:
        """metrics.csv as it stood when the checkpoint being resumed was written at `step`,
        with the rows that followed it at that step (AppendingWriter.resume_at)."""
        self.experiment.resume_at(step, pending)


def forget_metric_history(loggers: Sequence[Any]) -> None:
    """A resume that found no checkpoint starts the run afresh: its metrics.csv starts afresh
    too (the killed attempt's rows would otherwise stand beside the new ones, step for step)."""
    for logger in loggers:
        if isinstance(logger, RunCSVLogger):
            logger.resume_at(0)
