"""attnlab-compare --ladder: the scaling-law fit, compute multipliers and their bootstrap
intervals, learning-rate selection, refusals; Holm's correction and the minimum detectable
effect of --baseline."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize, stats

from attnlab.compare import Run, compare, significance
from attnlab.compare.cli import main
from attnlab.compare.ladder_reading import read_ladder
from attnlab.compare.scaling_fit import (
    fit_laws,
    multiplier,
    percentile_interval,
    resample_means,
    resample_pooled,
)
from attnlab.compare.significance import holm, min_detectable_effect

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def planted(e: float, a: float, alpha: float, mult: float = 1.0):
    """The law L(C) = e + a·(mult·C)^(-alpha): a variant that needs 1/mult of the compute."""
    return lambda c: e + a * (mult * np.asarray(c, dtype=float)) ** (-alpha)


# --- the fit ------------------------------------------------------------------------------------


def test_fit_recovers_a_noise_free_law_and_the_multiplier_exactly() -> None:
    rng = np.random.default_rng()
    for _ in range(5):
        e, alpha = rng.uniform(0.5, 3.0), rng.uniform(0.05, 1.0)
        compute = np.geomspace(1e12, 1e12 * 10 ** rng.uniform(2, 4), int(rng.integers(3, 7)))
        a = rng.uniform(0.3, 2.0) * compute[0] ** alpha  # reducible loss 0.3-2 at rung 0
        mult = rng.uniform(0.3, 4.0)
        base = fit_laws(compute, planted(e, a, alpha)(compute), np.ones(len(compute)), 1e15)
        var = fit_laws(compute, planted(e, a, alpha, mult)(compute), np.ones(len(compute)), 1e15)
        assert base.e[0] == pytest.approx(e, rel=1e-3)
        assert base.alpha[0] == pytest.approx(alpha, rel=1e-3)
        assert base.A[0] == pytest.approx(a, rel=1e-2)
        # The same multiplier at every compute, also beyond the ladder.
        for c in (compute[0], compute[-1], 100 * compute[-1]):
            assert multiplier(var, base, c)[0, 0] == pytest.approx(mult, rel=1e-2)


def test_fit_matches_scipy_curve_fit_on_noisy_points() -> None:
    # The same objective (relative error, weighted by seeds per rung) solved by scipy's
    # trust-region least squares from the planted values.
    rng = np.random.default_rng()
    compute = np.geomspace(1e13, 1e16, 5)
    counts = rng.integers(1, 5, size=5)
    truth = planted(1.7, 1.0 * 1e13**0.3, 0.3)(compute)
    means = truth + rng.normal(0, 0.01, 5) / np.sqrt(counts)
    law = fit_laws(compute, means, counts, compute[-1])

    def curve(log_c: np.ndarray, e: float, a: float, alpha: float) -> np.ndarray:
        return e + a * np.exp(-alpha * (log_c - np.log(compute[-1])))

    (e, a, alpha), _ = optimize.curve_fit(
        curve,
        np.log(compute),
        means,
        p0=[1.7, truth[-1] - 1.7, 0.3],  # a: the reducible loss at the largest compute
        sigma=means / np.sqrt(counts),
        bounds=([0, 0, 1e-3], [np.inf, np.inf, 3.0]),
    )
    assert law.e[0] == pytest.approx(e, abs=2e-3)
    assert law.alpha[0] == pytest.approx(alpha, rel=2e-2, abs=2e-3)
    assert law.a[0] == pytest.approx(a, rel=2e-2)


def test_unreachable_loss_is_an_infinite_multiplier_and_interval_end() -> None:
    compute = np.geomspace(1e12, 1e15, 4)
    base = fit_laws(compute, planted(2.0, 1e12**0.3, 0.3)(compute), np.ones(4), 1e15)
    better = fit_laws(compute, planted(1.95, 1e12**0.3, 0.3)(compute), np.ones(4), 1e15)
    m = multiplier(better, base, [1e15, 1e30])[0]
    assert np.isfinite(m[0]) and m[0] > 1 and m[1] == np.inf  # below the baseline's E of 2.0
    lo, hi = percentile_interval(np.array([1.0, 2.0, np.inf, np.inf, 3.0] * 20))
    assert np.isfinite(lo) and hi == np.inf


def test_resampling_spreads_match_the_sample_variance() -> None:
    rng = np.random.default_rng()
    values = rng.normal(2.0, 0.01, 4)
    means = resample_means(values, 200_000, rng)
    assert means.var() == pytest.approx(values.var(ddof=1) / 4, rel=0.03)
    cells = [rng.normal(m, 0.01, n) for m, n in ((3.0, 3), (2.5, 4), (2.2, 5))]
    pooled = resample_pooled(cells, 200_000, rng)
    s2 = sum(((c - c.mean()) ** 2).sum() for c in cells) / (12 - 3)  # pooled variance, df 9
    for j, cell in enumerate(cells):
        assert pooled[:, j].mean() == pytest.approx(cell.mean(), abs=2e-4)
        assert pooled[:, j].var() == pytest.approx(s2 / len(cell), rel=0.03)


# --- the recovery test of the issue ---------------------------------------------------------


def simulate(
    rng: np.random.Generator,
    replications: int,
    seeds: int = 4,
    noise: float = 0.002,
    rungs: int = 5,
    n_boot: int = 400,
    resample: str = "pooled",
) -> tuple[int, int, list[float]]:
    """Replications with the multiplier within 10% of 2.0, with 2.0 in the 95% interval.

    Baseline L(C) = 1.8 + A·C^(-0.3) with a reducible loss of 1.0 at 1e12 FLOPs, rungs from 1e12
    to 1e15 FLOPs; the variant reaches at C what the baseline does at 2C. Seed noise: normal,
    sd `noise` in nats (0.002 is 0.1% of a loss of 2; attnlab's GPT example has 0.004-0.008).
    """
    compute = np.geomspace(1e12, 1e15, rungs)
    laws = [planted(1.8, 1e12**0.3, 0.3, mult) for mult in (1.0, 2.0)]
    close = covered = 0
    estimates = []
    for _ in range(replications):
        fits, boots = [], []
        for law in laws:
            values = law(compute)[:, None] + rng.normal(0, noise, (rungs, seeds))
            counts = np.full(rungs, seeds)
            fits.append(fit_laws(compute, values.mean(1), counts, compute[-1]))
            if resample == "pooled":
                samples = resample_pooled(list(values), n_boot, rng)
            else:
                samples = np.stack([resample_means(v, n_boot, rng) for v in values], axis=1)
            shape = samples.shape
            boots.append(fit_laws(np.broadcast_to(compute, shape), samples, counts, compute[-1]))
        m = float(multiplier(fits[1], fits[0], compute[-1])[0, 0])
        lo, hi = percentile_interval(multiplier(boots[1], boots[0], compute[-1])[:, 0])
        close += bool(abs(m / 2.0 - 1) <= 0.10)
        covered += bool(lo <= 2.0 <= hi)
        estimates.append(m)
    return close, covered, estimates


@pytest.mark.slow
def test_planted_multiplier_of_two_is_recovered_in_100_replications() -> None:
    # The criterion, on a fixed seed: over 1500 replications of this design the interval
    # covered 2.0 in 94.5% and the estimate was within 10% in 97.9% (docs/compare_ladder.md), so
    # a fresh draw of 100 would fall under 90 about one time in 45 while the method is fine.
    close, covered, _ = simulate(np.random.default_rng(20), 100)
    assert close >= 90, close
    assert covered >= 90, covered


def test_planted_multiplier_recovery_in_a_few_replications() -> None:
    # Fresh noise; loose bounds that a correct fit passes except by a rare accident.
    close, covered, estimates = simulate(np.random.default_rng(), 8, n_boot=200)
    assert 1.6 < float(np.median(estimates)) < 2.5
    assert close >= 5 and covered >= 5


# --- fake sweeps: reading, lr selection, refusals, the CLI end to end ---------------------------


def write_run(
    path: Path,
    overrides: dict[str, object],
    metrics: dict[str, float],
    compute: float,
    mode: str = "min",
    optimized: str = "val/loss",
    ladder: dict[str, object] | None = None,
) -> None:
    """A job directory as attnlab-train leaves it (the parts attnlab-compare reads)."""
    (path / ".hydra").mkdir(parents=True)
    lines = "".join(f"- {k}={v}\n" for k, v in overrides.items())
    (path / ".hydra" / "overrides.yaml").write_text(lines)
    (path / ".hydra" / "config.yaml").write_text(
        f"optimized_metric: {optimized}\n" + f"optimized_mode: {mode}\n"
    )
    tokens = 2_000_000
    result = {
        "status": "done",
        "optimized_metric": optimized,
        "metrics": metrics,
        "parameters": {"total": 1000, "non_embedding": 800},
        "flops_per_token": compute / tokens,
        "tokens_seen": tokens,
    }
    if ladder is not None:  # what attnlab-train writes for a run of a ladder= config
        result["ladder"] = ladder
    (path / "metrics.json").write_text(json.dumps(result))


def write_ladder(
    root: Path,
    variants: dict[str, object],
    rungs: int = 4,
    seeds: int = 3,
    noise: float = 0.001,
    split_at: int = 2,
) -> np.ndarray:
    """A ladder of `variants` (pos -> law) over two sweep directories (rungs below `split_at`
    in the first); returns the compute of each rung."""
    rng = np.random.default_rng()
    compute = np.geomspace(1e12, 1e15, rungs)
    job = 0
    for pos, law in variants.items():
        for rung, c in enumerate(compute):
            for seed in range(1, seeds + 1):
                loss = float(law(c)) + rng.normal(0, noise)  # type: ignore[operator]
                directory = root / ("small" if rung < split_at else "large") / str(job)
                overrides = {"model.pos": pos, "ladder.rung": rung, "seed": seed}
                metrics = {"val/loss": loss + 0.02, "test/loss": loss}
                write_run(directory, overrides, metrics, c)
                job += 1
    return compute


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_ladder_cli_end_to_end_recovers_planted_laws(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = 1e12**0.3
    variants = {
        "learned": planted(1.8, a, 0.3),
        "rope": planted(1.8, a, 0.3, 2.0),  # needs half the compute
        "alibi": planted(1.5, a, 0.3),  # a lower asymptote: beyond the baseline's reach
    }
    write_ladder(tmp_path / "sweeps", variants)
    out = tmp_path / "sweeps" / "small" / "compare"  # the default: under the first directory
    sweeps = [str(tmp_path / "sweeps" / "small"), str(tmp_path / "sweeps" / "large")]
    main(["--ladder", *sweeps, "--baseline", "model.pos=learned", "--budget", "1e14", "1e22"])
    printed = capsys.readouterr().out
    assert "Compute multipliers against `model.pos=learned`" in printed
    rows = {row["variant"]: row for row in read_csv(out / "ladder.csv")}
    assert set(rows) == {"model.pos=learned", "model.pos=rope", "model.pos=alibi"}
    assert rows["model.pos=learned"]["baseline"] == "True"
    for name, e in (("model.pos=learned", 1.8), ("model.pos=rope", 1.8), ("model.pos=alibi", 1.5)):
        row = rows[name]
        assert float(row["E"]) == pytest.approx(e, abs=0.03)
        assert float(row["alpha"]) == pytest.approx(0.3, rel=0.1)
        assert float(row["E_lo"]) <= float(row["E"]) <= float(row["E_hi"])
        assert (row["rungs"], row["seeds_min"]) == ("4", "3")
        assert float(row["top_compute"]) == pytest.approx(1e15)
    rope = rows["model.pos=rope"]
    assert float(rope["multiplier_top"]) == pytest.approx(2.0, rel=0.15)
    assert float(rope["multiplier_top_lo"]) <= float(rope["multiplier_top"])
    assert float(rope["multiplier_top"]) <= float(rope["multiplier_top_hi"])
    assert float(rope["multiplier_1e+14"]) == pytest.approx(2.0, rel=0.1)  # inside the ladder
    alibi = rows["model.pos=alibi"]
    assert float(alibi["multiplier_1e+22"]) == math.inf
    markdown = (out / "ladder.md").read_text()
    assert "∞ (beyond baseline's asymptote)" in markdown
    assert "95% percentile bootstrap" in markdown
    assert markdown.count("| model.pos=") == 3 + 2 + 3 * 4  # laws, multipliers, rungs
    runs = read_csv(out / "ladder_runs.csv")
    assert len(runs) == 3 * 4 * 3 and all(r["kept"] == "True" for r in runs)
    for name in ("loss_vs_compute.png", "multiplier_vs_compute.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE


def test_lr_grid_keeps_the_best_lr_on_validation_and_reports_its_test_metric(
    tmp_path: Path,
) -> None:
    rng = random.Random()
    compute = [1e12, 1e13, 1e14]
    expected = {}
    for rung, c in enumerate(compute):
        best = rng.choice(["1e-3", "3e-3", "1e-2"])
        for lr in ("1e-3", "3e-3", "1e-2", "3e-2"):
            for seed in (1, 2):
                val = 2.0 - rung * 0.1 + (0.0 if lr == best else rng.uniform(0.01, 0.2))
                # The test metric favours another lr: it must not decide the pick.
                test = val + (0.5 if lr == best else 0.0) + seed * 0.01
                overrides = {"optimizer.lr": lr, "ladder.rung": rung, "seed": seed}
                path = tmp_path / f"{rung}_{lr}_{seed}"
                if lr == "3e-2" and seed == 2:  # a diverged lr: the best val, but a failed run
                    write_run(path, overrides, {"val/loss": 0.1, "test/loss": 0.1}, c)
                    (path / "failure.json").write_text(json.dumps({"error": "NaN loss"}))
                    continue
                loss = 0.1 if lr == "3e-2" else val
                write_run(path, overrides, {"val/loss": loss, "test/loss": test}, c)
        expected[str(rung)] = best
    metric, ladder, _ = read_ladder([tmp_path])
    assert metric == "test/loss" and list(ladder) == ["all runs"]  # lr is not a variant
    for rung in ladder["all runs"]:
        assert rung.lr == expected[rung.label]
        assert set(rung.lr_scores) == {"1e-3", "3e-3", "1e-2"}  # 3e-2 had a failed run
        assert sorted(rung.values) == pytest.approx(
            [2.0 - int(rung.label) * 0.1 + 0.5 + s * 0.01 for s in (1, 2)]
        )


def test_lr_selection_follows_optimized_mode_max(tmp_path: Path) -> None:
    for rung, c in enumerate([1e12, 1e13, 1e14]):
        for lr, acc in (("1e-3", 0.7), ("1e-2", 0.9)):
            write_run(
                tmp_path / f"{rung}_{lr}",
                {"optimizer.lr": lr, "ladder.rung": rung, "seed": 1},
                {"val/acc": acc, "test/loss": 1.0 / (rung + 1)},
                c,
                mode="max",
                optimized="val/acc",
            )
    _, ladder, _ = read_ladder([tmp_path])
    assert [r.lr for r in ladder["all runs"]] == ["1e-2"] * 3


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        (
            {"learned": {2, 3}},
            "ladder too small to fit: variant 'model.pos=learned' has finished "
            "runs at rung(s) 0, 1",
        ),
        ({"rope": {1}}, "variant 'model.pos=rope' lacks rung(s) 1 that other variants have"),
    ],
)
def test_a_ladder_too_small_to_fit_is_refused_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    drop: dict[str, set[int]],
    message: str,
) -> None:
    for pos in ("learned", "rope"):
        for rung, c in enumerate([1e12, 1e13, 1e14, 1e15]):
            if rung in drop.get(pos, set()):
                continue
            overrides = {"model.pos": pos, "ladder.rung": rung, "seed": 1}
            write_run(tmp_path / f"{pos}{rung}", overrides, {"test/loss": 3.0 - rung / 4}, c)
    with pytest.raises(SystemExit) as exit_info:
        main(["--ladder", str(tmp_path), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error
    assert not (tmp_path / "out").exists()


def test_runs_without_a_rung_are_refused_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_run(tmp_path / "0", {"model.pos": "rope", "seed": 1}, {"test/loss": 2.0}, 1e12)
    with pytest.raises(SystemExit):
        main(["--ladder", str(tmp_path)])
    assert "has no rung: expected a ladder.rung override" in capsys.readouterr().err


def test_rung_key_names_the_size_override_and_sizes_are_not_variants(tmp_path: Path) -> None:
    for pos in ("learned", "rope"):
        for rung, width in enumerate((32, 64, 128)):
            overrides = {"model.pos": pos, "model.d_model": width, "seed": 1}
            write_run(
                tmp_path / f"{pos}{width}", overrides, {"test/loss": 3.0 - rung / 4}, 1e12 * 4**rung
            )
    _, ladder, _ = read_ladder([tmp_path], rung_key="model.d_model")
    assert list(ladder) == ["model.pos=learned", "model.pos=rope"]
    assert [r.label for r in ladder["model.pos=rope"]] == ["32", "64", "128"]


# --- --baseline: Holm and the minimum detectable effect --------------------------------------


def test_holm_on_a_hand_worked_example() -> None:
    # sorted: 0.005 x4 = 0.02; 0.01 x3 = 0.03; 0.03 x2 = 0.06; 0.04 x1 = 0.04 -> max(0.06, 0.04)
    assert holm([0.01, 0.04, 0.03, 0.005, None]) == pytest.approx([0.03, 0.06, 0.06, 0.02, None])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_holm_rejects_what_the_step_down_procedure_rejects() -> None:
    rng = random.Random()
    for _ in range(50):
        p = [rng.random() ** 3 for _ in range(rng.randint(1, 8))]
        # Holm (1979): step through p_(1) <= p_(2) ..., reject while p_(k) <= level / (m - k + 1).
        rejected, m = set(), len(p)
        for k, i in enumerate(sorted(range(m), key=p.__getitem__)):
            if p[i] > 0.05 / (m - k):
                break
            rejected.add(i)
        adjusted = holm(p)
        assert {i for i, q in enumerate(adjusted) if q <= 0.05} == rejected
        assert all(q >= raw for q, raw in zip(adjusted, p, strict=True))


def test_min_detectable_effect_matches_the_normal_formula_at_large_df() -> None:
    z = stats.norm.ppf
    assert min_detectable_effect(1.0, 1e6) == pytest.approx(z(0.975) + z(0.8), rel=1e-3)
    assert min_detectable_effect(0.3, 1e6, "less") == pytest.approx(
        0.3 * (z(0.95) + z(0.8)), rel=1e-3
    )


@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
def test_paired_test_has_power_080_at_its_minimum_detectable_effect(alternative: str) -> None:
    # Simulate the paired t-test with the true difference set to the MDE of its standard error.
    rng = np.random.default_rng()
    n, sd = int(rng.integers(3, 7)), rng.uniform(0.005, 0.05)
    effect = min_detectable_effect(sd / math.sqrt(n), n - 1, alternative)
    diffs = rng.normal(effect, sd, (40_000, n))
    p = stats.ttest_1samp(diffs, 0.0, axis=1, alternative=alternative).pvalue
    assert (p < 0.05).mean() == pytest.approx(0.8, abs=0.015)


def _run(seed: int, value: float) -> Run:
    return Run(Path(f"r{seed}"), {"seed": str(seed)}, "done", result={"metrics": {"m": value}})


def test_significance_rows_hold_holm_and_mde() -> None:
    rng = random.Random()
    base = [rng.gauss(0.8, 0.01) for _ in range(4)]
    groups = {"base": [_run(s, v) for s, v in enumerate(base)]}
    for name, shift in (("big", 0.05), ("none", 0.0), ("small", 0.01)):
        groups[name] = [_run(s, v + shift + rng.gauss(0, 0.003)) for s, v in enumerate(base)]
    rows = significance(groups, "base", "m")
    for test in ("welch", "paired"):
        assert [r[f"{test}_p_holm"] for r in rows] == pytest.approx(
            holm([r[f"{test}_p"] for r in rows])
        )
        for row in rows:
            assert row[f"{test}_significant"] == (row[f"{test}_p_holm"] < 0.05)
    big = rows[0]
    diffs = [
        b.result["metrics"]["m"] - a.result["metrics"]["m"]
        for a, b in zip(groups["base"], groups["big"], strict=True)
    ]
    se = float(np.std(diffs, ddof=1)) / 2
    assert big["paired_mde"] == pytest.approx(min_detectable_effect(se, 3))
    assert big["welch_mde"] > 0


def test_tune_lr_in_the_plain_comparison_keeps_each_variants_best_lr(tmp_path: Path) -> None:
    rng = random.Random()
    best = {pos: rng.choice(["1e-3", "1e-2"]) for pos in ("learned", "rope")}
    for pos in best:
        for lr in ("1e-3", "1e-2"):
            for seed in (1, 2):
                val = 2.0 if lr == best[pos] else 2.0 + rng.uniform(0.01, 0.3)
                metrics = {"val/loss": val, "test/loss": val + seed / 100}
                overrides = {"model.pos": pos, "optimizer.lr": lr, "seed": seed}
                write_run(tmp_path / f"{pos}{lr}{seed}", overrides, metrics, 1e12)
    out = compare(tmp_path, tmp_path / "out", baseline="model.pos=learned", tune_lr=True)
    rows = read_csv(out / "comparison.csv")
    names = [f"model.pos={p} (optimizer.lr={best[p]} best on val/loss)" for p in best]
    assert [r["variant"] for r in rows] == names
    assert all(float(r["test/loss_mean"]) == pytest.approx(2.015) for r in rows)
    (row,) = read_csv(out / "significance.csv")
    assert row["variant"] == names[1] and float(row["difference"]) == pytest.approx(0.0, abs=1e-12)


def test_rungs_of_one_compute_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for rung in range(4):  # an iso-FLOP ladder: every size at the same compute
        overrides = {"ladder.rung": rung, "seed": 1}
        write_run(tmp_path / str(rung), overrides, {"test/loss": 2.0 + rung / 10}, 1e15)
    with pytest.raises(SystemExit):
        main(["--ladder", str(tmp_path)])
    assert "used 1 distinct training compute(s)" in capsys.readouterr().err


def test_rung_and_compute_come_from_metrics_json_ladder_record(tmp_path: Path) -> None:
    # A run of `ladder=...` records its rung and training FLOPs in metrics.json; they win over
    # the overrides and over flops_per_token x tokens_seen.
    for rung, flops in enumerate((3e12, 5e13, 7e14)):
        for seed in (1, 2):
            record = {"name": "tiny_cpu", "rung": rung, "training_flops": flops}
            overrides = {"ladder.rung": 9, "seed": seed}  # a wrong override: the record wins
            metrics = {"test/loss": 3.0 - rung / 4 + seed / 100}
            write_run(tmp_path / f"{rung}_{seed}", overrides, metrics, 1.0, ladder=record)
    _, ladder, _ = read_ladder([tmp_path])
    (rungs,) = ladder.values()
    assert [r.label for r in rungs] == ["0", "1", "2"]
    assert [r.mean_compute for r in rungs] == [3e12, 5e13, 7e14]


def test_a_ladder_whose_loss_does_not_fall_says_its_exponent_is_not_pinned_down(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng()
    for rung, c in enumerate((1e12, 1e13, 1e14, 1e15)):
        for seed in (1, 2):  # the loss rises with compute: the best law is flat (A = 0)
            metrics = {"test/loss": 2.0 + 0.05 * rung + float(rng.normal(0, 0.001))}
            write_run(tmp_path / f"{rung}{seed}", {"ladder.rung": rung, "seed": seed}, metrics, c)
    main(["--ladder", str(tmp_path), "--bootstrap", "100"])
    markdown = (tmp_path / "compare" / "ladder.md").read_text()
    assert "is at or near the edge of the range searched" in markdown


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "0"], "--budget 0.0: a compute budget is a positive number of FLOPs"),
        (["--bootstrap", "10"], "--bootstrap 10: at least 100 samples"),
        (["--baseline", "model.pos=alibi"], "valid choices: 'model.pos=learned'"),
        (["--stat-metric", "test/acc"], "--stat-metric 'test/acc' is in no finished run"),
    ],
)
def test_bad_ladder_options_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    write_ladder(tmp_path, {"learned": planted(1.8, 1e4, 0.3), "rope": planted(1.8, 1e4, 0.3, 2)})
    with pytest.raises(SystemExit) as exit_info:
        main(["--ladder", str(tmp_path), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "small" / "compare").exists()


def test_several_sweep_dirs_need_ladder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path), str(tmp_path)])
    assert "several SWEEP_DIRs are read only with --ladder" in capsys.readouterr().err


def test_failed_and_unfinished_runs_are_left_out_not_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_ladder(tmp_path, {"learned": planted(1.8, 1e4, 0.3)}, seeds=2)
    running = tmp_path / "small" / "running"  # started, no metrics.json, rung not yet known
    (running / ".hydra").mkdir(parents=True)
    (running / ".hydra" / "overrides.yaml").write_text("- model.pos=learned\n- seed=3\n")
    failed = tmp_path / "large" / "failed"
    write_run(failed, {"model.pos": "learned", "ladder.rung": 3, "seed": 3}, {}, 1e15)
    (failed / "failure.json").write_text(json.dumps({"error": "out of memory"}))
    _, ladder, runs = read_ladder([tmp_path / "small", tmp_path / "large"])
    assert [len(r.values) for r in ladder["all runs"]] == [2, 2, 2, 2]
    assert sorted(r.status for r in runs).count("done") == 8 and len(runs) == 10
    with pytest.raises(SystemExit):
        main(["--ladder", str(tmp_path / "nope")])
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(f"sweep directory {tmp_path / 'nope'} does not exist")
    )


def test_welch_test_has_about_080_power_at_its_minimum_detectable_effect() -> None:
    # Welch's MDE uses the Welch-Satterthwaite df: an approximation whose simulated power is
    # 0.70-0.80 at 3-5 seeds (docs/compare_ladder.md): close to, and under, the nominal 0.8.
    rng = np.random.default_rng()
    n1, n2 = int(rng.integers(3, 6)), int(rng.integers(3, 6))
    s1, s2 = rng.uniform(0.005, 0.02, 2)
    v1, v2 = s1**2 / n1, s2**2 / n2
    df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    effect = min_detectable_effect(math.sqrt(v1 + v2), df)
    a, b = rng.normal(effect, s1, (40_000, n1)), rng.normal(0.0, s2, (40_000, n2))
    p = stats.ttest_ind(a, b, axis=1, equal_var=False).pvalue
    assert 0.65 < (p < 0.05).mean() < 0.82
