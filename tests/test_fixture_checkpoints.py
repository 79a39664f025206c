"""Checkpoints written by an older attnlab still load and test to the metrics they had then."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnlab.run.eval import evaluate
from tests.conftest import compose_config

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints"
RECORDED = json.loads((FIXTURES / "metrics.json").read_text())


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_old_checkpoint_evaluates_to_recorded_metrics(name: str, tmp_path: Path) -> None:
    cfg = compose_config(
        tmp_path,
        [f"ckpt_path={FIXTURES / f'{name}.ckpt'}", "trainer.accelerator=cpu", "seed=0"],
        config_name="eval",
    )
    metrics = evaluate(cfg)["metrics"]
    expected = RECORDED[name]
    assert sorted(metrics) == sorted(expected)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
