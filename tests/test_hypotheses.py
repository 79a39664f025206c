"""The hypotheses callback writes each validation's and the test's decoded outputs."""

from __future__ import annotations

from pathlib import Path

from attnlab.data.loading.download import read_lines
from attnlab.run.train import train
from tests.conftest import TINY_SETUP


def test_toy_seq2seq_hypotheses_are_written(train_config, tmp_path: Path) -> None:
    # Toy batches carry each pair's `index`: lines come in corpus order, one per example.
    train(train_config("trainer.max_epochs=2", "callbacks=[default,hypotheses]", base=TINY_SETUP))
    out = tmp_path / "hypotheses"
    assert sorted(p.name for p in out.iterdir()) == ["test.txt", "val_epoch0.txt", "val_epoch1.txt"]
    assert len(read_lines(out / "val_epoch1.txt")) == 64  # data.num_val
    assert len(read_lines(out / "test.txt")) == 64
