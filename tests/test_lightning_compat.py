"""Each private Lightning/torchmetrics name attnlab uses (utils/lightning_compat.py), exercised
against the installed versions. A failure here after upgrading Lightning or torchmetrics means
that version changed something attnlab's exact resume relies on: fix lightning_compat.py, then
raise the upper bound in pyproject.toml and environment.yml."""

from __future__ import annotations

import random
import sys
from datetime import timedelta
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torchmetrics
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from attnlab.utils import lightning_compat as compat

VERSIONS = f"lightning {pl.__version__}, torchmetrics {torchmetrics.__version__}"


def test_every_private_name_still_exists() -> None:
    missing = compat.missing_private_names()
    assert not missing, (
        f"{VERSIONS} no longer has {', '.join(missing)}: attnlab's resume depends on them; "
        "update src/attnlab/utils/lightning_compat.py before raising the version bound"
    )


def test_rng_states_round_trip() -> None:
    seed = random.randrange(2**31)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    states = compat.collect_rng_states(include_cuda=False)
    first = (torch.rand(3), np.random.rand(3), random.random())
    compat.set_rng_states(states)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]), VERSIONS
    assert np.array_equal(first[1], again[1]) and first[2] == again[2], VERSIONS


def test_metric_update_count_round_trip() -> None:
    values = torch.randn(random.randrange(2, 9))
    metric = torchmetrics.MeanMetric()
    for value in values:
        metric.update(value)
    expected = metric.compute()
    assert compat.metric_update_count(metric) == len(values), VERSIONS
    restored = torchmetrics.MeanMetric()
    for name, state in metric.metric_state.items():
        setattr(restored, name, state.clone())
    compat.restore_metric_update_count(restored, compat.metric_update_count(metric))
    assert compat.metric_update_count(restored) == len(values), VERSIONS
    assert torch.allclose(restored.compute(), expected), VERSIONS


class TinyRegression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def loader() -> DataLoader:
    x = torch.randn(24, 4)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


class Probe(ModelCheckpoint):
    """Records what the compat functions say at each training batch and validation."""

    def __init__(self, dirpath: Path) -> None:
        super().__init__(dirpath=dirpath, monitor="val_loss", save_last=True, save_top_k=1)
        self.follows: list[bool] = []
        self.skipped: list[bool] = []
        self.candidates: list[dict[str, torch.Tensor]] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        compat.load_pending_loader_states(trainer)  # nothing pending in a fresh fit: a no-op

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.follows.append(compat.validation_follows_batch(trainer))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.skipped.append(compat.skips_saving(self, trainer))
        if trainer.sanity_checking:
            return
        candidates = compat.monitor_candidates(self, trainer)
        self.candidates.append(candidates)
        compat.save_top_k(self, trainer, candidates)
        compat.save_last(self, trainer, candidates)


def test_model_checkpoint_and_fit_loop_internals(tmp_path: Path) -> None:
    probe = Probe(tmp_path)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        val_check_interval=3,  # 6 batches: validations after batches 3 and 6
        num_sanity_val_steps=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[probe],
    )
    trainer.fit(TinyRegression(), loader(), loader())
    assert probe.follows == [False, False, True, False, False, True], VERSIONS
    assert probe.skipped == [True, False, False], VERSIONS  # the sanity check saves nothing
    assert [int(c["step"]) for c in probe.candidates] == [3, 6], VERSIONS
    assert all("val_loss" in c and "epoch" in c for c in probe.candidates), VERSIONS
    assert Path(probe.last_model_path).name == "last.ckpt", VERSIONS
    assert Path(probe.best_model_path).is_file(), VERSIONS
    best = min(probe.candidates, key=lambda c: float(c["val_loss"]))
    assert float(probe.best_model_score) == pytest.approx(float(best["val_loss"])), VERSIONS
    assert compat.saves_on_train_epoch_end(probe, trainer) is False, VERSIONS

    compat.restore_callback_metric(trainer, "restored", 1.5)
    compat.restore_callback_metric(trainer, "restored", 2.5)  # one already there wins
    assert float(trainer.callback_metrics["restored"]) == 1.5, VERSIONS


def test_run_checkpoint_keeps_the_triggers_model_checkpoint_normalises() -> None:
    """RunCheckpoint reads its save triggers from its own arguments, not ModelCheckpoint's
    private attributes: they must agree with what ModelCheckpoint makes of the same ones."""
    from attnlab.callbacks import RunCheckpoint

    steps = random.randrange(1, 50)
    by_steps = RunCheckpoint(every_n_train_steps=steps)
    assert by_steps.periodic_steps == steps and by_steps.periodic_interval is None
    assert by_steps.every_n_epochs == 0, VERSIONS  # a step trigger turns epoch saves off
    assert by_steps.rank_every_n_epochs == 1  # validations are still ranked every epoch
    by_time = RunCheckpoint(train_time_interval=timedelta(seconds=steps))
    assert by_time.periodic_interval == timedelta(seconds=steps) and by_time.periodic_steps == 0
    assert RunCheckpoint(every_n_epochs=steps).every_n_epochs == steps, VERSIONS
    assert RunCheckpoint(every_n_epochs=steps).rank_every_n_epochs == steps
    assert RunCheckpoint().every_n_epochs == 1, VERSIONS


def test_progress_bar_description_goes_through_the_public_method(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning still calls the private method callbacks/progress.py replaces."""
    from attnlab.callbacks import RichProgressBar

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # the bar draws in a terminal only

    epochs = random.randrange(2, 9)
    seen: list[str] = []

    class Bar(RichProgressBar):
        def train_description(self, current_epoch: int) -> str:
            seen.append(super().train_description(current_epoch))
            return seen[-1]

    bar = Bar()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        limit_train_batches=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[bar],
    )
    trainer.fit(TinyRegression(), loader())
    assert [s.strip() for s in seen][-1] == f"Epoch {epochs - 1}/{epochs - 1}", VERSIONS
    assert compat.train_description(bar, 0).strip() == f"Epoch 0/{epochs - 1}", VERSIONS


def test_attached_trainer() -> None:
    module = TinyRegression()
    assert compat.attached_trainer(module) is None, VERSIONS
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,  # nothing written in the working directory
        enable_progress_bar=False,
    )
    trainer.fit(module, loader())
    assert compat.attached_trainer(module) is trainer, VERSIONS
