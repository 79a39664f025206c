"""Per variant, the scaling law L(C) = E + A·C^(-alpha) fitted to its rungs' means and
bootstrapped over seeds (scaling_fit.py); against a baseline, compute multipliers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from attnlab.compare.ladder_reading import Rung
from attnlab.compare.scaling_fit import (
    Laws,
    fit_laws,
    multiplier,
    percentile_interval,
    resample_means,
    resample_pooled,
)

RESAMPLING = ("pooled", "rung")


@dataclass
class VariantFit:
    """One variant's rungs, its fitted law and the bootstrap's."""

    name: str
    rungs: list[Rung]
    law: Laws  # the fit to the data (one law)
    boot: Laws  # the fits to the bootstrap samples
    # (point, low, high) at the largest rung, then at each budget
    multipliers: list[tuple[float, float, float]] = field(default_factory=list)


RESAMPLING = ("pooled", "rung")


def _fit_variant(
    name: str,
    rungs: list[Rung],
    c_ref: float,
    n_boot: int,
    rng: np.random.Generator,
    resample: str = "pooled",
) -> VariantFit:
    compute = np.array([r.mean_compute for r in rungs])
    means = np.array([r.values.mean() for r in rungs])
    counts = np.array([len(r.values) for r in rungs])
    law = fit_laws(compute[None], means[None], counts, c_ref)
    if resample == "pooled":  # seed deviations pooled over the rungs: see scaling_fit.py
        samples = resample_pooled([r.values for r in rungs], n_boot, rng)
    else:
        samples = np.stack([resample_means(r.values, n_boot, rng) for r in rungs], axis=1)
    boot = fit_laws(np.broadcast_to(compute, samples.shape), samples, counts, c_ref)
    return VariantFit(name, rungs, law, boot)


def fit_ladder(
    ladder: dict[str, list[Rung]],
    baseline: str | None = None,
    budgets: tuple[float, ...] = (),
    n_boot: int = 1000,
    seed: int = 0,
    resample: str = "pooled",
) -> list[VariantFit]:
    """One fit per variant; against `baseline`, multipliers at the largest rung and budgets."""
    rng = np.random.default_rng(seed)
    c_ref = max(r.mean_compute for rungs in ladder.values() for r in rungs)
    fits = [
        _fit_variant(name, rungs, c_ref, n_boot, rng, resample) for name, rungs in ladder.items()
    ]
    if baseline is None:
        return fits
    base = next(f for f in fits if f.name == baseline)
    for fit in fits:
        if fit is base:
            continue
        horizons = [fit.rungs[-1].mean_compute, *budgets]
        point = multiplier(fit.law, base.law, horizons)[0]
        lo, hi = percentile_interval(multiplier(fit.boot, base.boot, horizons))
        fit.multipliers = [
            (float(p), float(a), float(b)) for p, a, b in zip(point, lo, hi, strict=True)
        ]
    return fits
