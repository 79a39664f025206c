"""A one-sided significance test follows the metric's direction: "better" is lower for a loss
and higher for an accuracy, and `greater` on a loss (which tests "worse") is refused."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from attnlab.compare import compare, find_runs, significance, variants
from attnlab.compare.cli import main

SEEDS = (1, 2, 3, 4)


def write_sweep(root: Path, mode: str | None = "min", metric: str = "val/loss") -> Path:
    """A 2-variant x 4-seed sweep on disk whose variant (rope) is planted better on every
    metric: test/loss 0.07 lower and test/acc 0.02 higher than learned, each plus seed noise."""
    rng = random.Random(0)
    by_seed = {seed: rng.gauss(0, 0.005) for seed in SEEDS}  # what a seed does to both variants
    for job, (pos, seed) in enumerate((p, s) for p in ("learned", "rope") for s in SEEDS):
        hydra = root / str(job) / ".hydra"
        hydra.mkdir(parents=True)
        overrides = [f"model.pos={pos}", f"seed={seed}"]
        (hydra / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        config = {"optimized_metric": metric} | ({"optimized_mode": mode} if mode else {})
        (hydra / "config.yaml").write_text(yaml.safe_dump(config))
        shared = by_seed[seed]
        better = pos == "rope"
        metrics = {
            "test/loss": 2.0 + shared - 0.07 * better + rng.gauss(0, 0.005),
            "test/acc": 0.6 - shared + 0.02 * better + rng.gauss(0, 0.002),
            "test/score": 5.0 + 0.5 * better + rng.gauss(0, 0.05),
        }
        result = {"metrics": metrics, "optimized_metric": metric}
        (root / str(job) / "metrics.json").write_text(json.dumps(result))
    return root


@pytest.mark.parametrize("metric", ["test/loss", "test/acc"])
def test_one_sided_better_finds_a_planted_improvement(tmp_path: Path, metric: str) -> None:
    groups = variants(find_runs(write_sweep(tmp_path)))
    (better,) = significance(groups, "model.pos=learned", metric, "better")
    assert better["welch_p"] < 0.05 and better["paired_p"] < 0.05
    assert better["welch_significant"] and better["paired_significant"]
    (worse,) = significance(groups, "model.pos=learned", metric, "worse")
    assert worse["welch_p"] > 0.99 and worse["paired_p"] > 0.99


def test_greater_on_a_loss_is_refused_in_one_line_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = write_sweep(tmp_path / "sweep")
    args = [str(sweep), "--baseline", "model.pos=learned", "--stat-metric", "test/loss"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--alternative", "greater"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--alternative greater on test/loss, where lower is better" in error
    assert "--alternative better" in error
    assert not (sweep / "compare").exists()
    # `less` is what "better" means for a loss: accepted, and stated so.
    main([*args, "--alternative", "less"])
    text = (sweep / "compare" / "significance.md").read_text()
    assert "one-sided: variant better (lower) than baseline; lower is better" in text
    main([*args, "--alternative", "worse"])  # said in words, the other direction is fine
    text = (sweep / "compare" / "significance.md").read_text()
    assert "one-sided: variant worse (higher) than baseline; lower is better" in text


def test_the_mode_comes_from_optimized_mode_and_tables_say_which_way_is_better(
    tmp_path: Path,
) -> None:
    # test/score is named by no rule: its direction is the runs' optimized_mode (max).
    sweep = write_sweep(tmp_path / "max", mode="max", metric="val/score")
    (row,) = significance(variants(find_runs(sweep)), "model.pos=learned", "test/score", "better")
    assert row["welch_p"] < 0.01
    out = compare(sweep, baseline="model.pos=learned", alternative="better")
    assert "higher is better" in (out / "significance.md").read_text()
    loss_sweep = write_sweep(tmp_path / "min")
    comparison = (compare(loss_sweep) / "comparison.md").read_text()
    assert comparison.splitlines()[1] == "test/loss: lower is better"
    # Without an optimized_mode for it, "better" on test/score is refused in one line.
    unknown = write_sweep(tmp_path / "unknown", mode=None, metric="val/loss")
    with pytest.raises(ValueError, match="whether lower or higher test/score is better"):
        compare(
            unknown, baseline="model.pos=learned", stat_metric="test/score", alternative="better"
        )


def test_the_tables_round_to_the_seed_spread() -> None:
    """Wall time printed as `42.1000 ± 5.2467`: two figures of the spread, at most 4 decimals."""
    from attnlab.compare.tables import _format

    assert _format((42.1, 5.2467), True) == "42.1 ± 5.2"
    assert _format((2.3368, 0.0192), True) == "2.337 ± 0.019"
    assert _format((2.5095, 0.00012), True) == "2.5095 ± 0.0001"  # never more than 4
    assert _format((12578.0, 1995.0), True) == "12,578 ± 1,995"
    assert _format((3.0, 0.0), True) == "3.0000"  # one seed: the value as it was
