"""First-run traps (issue 22), each with a test that would catch it again."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl

from attnlab.train import optimized_value, train

SLOW = pytest.mark.slow


class CountValidations(pl.Callback):
    def __init__(self) -> None:
        self.at_steps: list[int] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.at_steps.append(trainer.global_step)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # 8 batches an epoch, validation once an epoch: ends at step 3, before the first
        (["trainer.max_steps=3"], [3]),
        # the last step validates anyway: no second validation
        pytest.param(["trainer.max_steps=4", "trainer.val_check_interval=2"], [2, 4], marks=SLOW),
        # epochs that never validate (every 5th epoch, 2 epochs)
        pytest.param(
            ["trainer.max_epochs=2", "trainer.check_val_every_n_epoch=5"], [16], marks=SLOW
        ),
    ],
)
def test_a_run_that_ends_before_validating_validates_at_its_last_step(
    train_config, overrides: list[str], expected: list[int]
) -> None:
    cfg = train_config(*overrides)
    counter = CountValidations()
    result = train(cfg, extra_callbacks=[counter])
    assert counter.at_steps == expected
    assert optimized_value(cfg, result) == result["metrics"]["val/loss"]
    assert Path(result["best_checkpoint"]).is_file()  # and test used it
