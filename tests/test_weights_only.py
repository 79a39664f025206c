"""Checkpoints load without unpickling code: torch.load(weights_only=True), which attnlab's own
reads use; a file that needs more is still read, with a warning naming what it holds."""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from attnlab.run.checkpoint_io import AtomicCheckpointIO, read_checkpoint


def plain_checkpoint() -> dict:
    return {
        "state_dict": OrderedDict(w=torch.randn(3, 4)),
        "hyper_parameters": {"config": {"model": {"d_model": 4}, "tags": ["dev"]}},
        "rng_states": {"numpy": ["MT19937", list(range(5)), 2, 0, 0.0]},
        "tokenizer": {"fingerprint": "abc", "json": "{}"},
    }


def test_plain_checkpoint_reads_without_unpickling(tmp_path: Path, caplog) -> None:
    path = tmp_path / "plain.ckpt"
    saved = plain_checkpoint()
    AtomicCheckpointIO().save_checkpoint(saved, path)
    with caplog.at_level(logging.WARNING):
        checkpoint = read_checkpoint(path)
    assert not caplog.records  # read with weights_only=True, no fallback
    assert torch.equal(checkpoint["state_dict"]["w"], saved["state_dict"]["w"])
    assert checkpoint["hyper_parameters"] == saved["hyper_parameters"]
    torch.load(path, weights_only=True)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (np.arange(4), "numpy"),  # numpy's RNG state as an older attnlab stored it
        (Path("x"), "pathlib"),
    ],
)
def test_older_checkpoint_needing_unpickling_still_reads(
    tmp_path: Path, caplog, extra: object, named: str
) -> None:
    path = tmp_path / "old.ckpt"
    saved = {**plain_checkpoint(), "extra": extra}
    AtomicCheckpointIO().save_checkpoint(saved, path)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path, weights_only=True)
    with caplog.at_level(logging.WARNING):
        checkpoint = read_checkpoint(path)  # checksum verified as before
    assert torch.equal(checkpoint["state_dict"]["w"], saved["state_dict"]["w"])
    (record,) = caplog.records
    assert str(path) in record.getMessage() and named in record.getMessage()
    assert "weights_only=True" in record.getMessage()
