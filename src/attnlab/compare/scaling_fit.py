"""Fit L(C) = E + A·C^(-alpha) to a ladder's (compute, loss) points, bootstrap the fit over seeds,
and read compute multipliers off the fitted laws.

The fit minimises the squared relative error, sum over rungs of n_r·((L_r - L(C_r)) / L_r)²,
with L_r the mean loss of the rung's n_r seeds and C_r its mean compute (the same as fitting
every seed's point when a rung's seeds used the same compute). For a fixed alpha the law is
linear in (E, A), so E and A have a closed form (constrained to E ≥ 0, A ≥ 0) and only alpha is
searched: on a grid, then on finer grids around the best point (variable projection). A fit is
a few array operations, so a thousand bootstrap fits run at once, and none can fail to converge.

Bootstrap over seeds, two ways. resample_means: each rung's seeds resampled with replacement,
independently per rung and per variant, the deviations from the rung's mean scaled by
sqrt(n/(n-1)) so that a resampled mean's spread matches s^2/n instead of (n-1)/n of it.
resample_pooled (the default of attnlab-compare --ladder): each rung's seeds drawn from the
deviations of all the variant's seeds from their rung means, which assumes the seed noise is of
similar size at every rung. With 2 to 5 seeds a rung, a per-rung spread is itself so noisy that
the per-rung intervals come out too narrow: in tests/test_ladder_fit.py's simulation (4 seeds,
5 rungs) the 95% interval of the multiplier covered the planted value in 91.3% of 1000
replications per rung and in 94.5% of 1500 pooled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHA_RANGE = (1e-3, 3.0)  # the exponents searched; ladders measure 0.05-0.5
ALPHA = "\u03b1"
LAW = "L(C) = E + A\u00b7C^(\u2212" + ALPHA + ")"  # for tables and plots
_COARSE, _FINE, _LEVELS = 97, 25, 5  # grid points (coarse, each finer level), finer levels


@dataclass(frozen=True)
class Laws:
    """A batch of fitted laws L(C) = e + a·(C / c_ref)^(-alpha); arrays of one shape."""

    e: np.ndarray
    a: np.ndarray  # the reducible loss at c_ref
    alpha: np.ndarray
    c_ref: float

    @property
    def A(self) -> np.ndarray:  # the law's usual name
        """The coefficient with C in FLOPs: L(C) = E + A·C^(-alpha)."""
        with np.errstate(over="ignore"):
            return self.a * self.c_ref**self.alpha

    def loss(self, compute: np.ndarray | float) -> np.ndarray:
        """L(C) for every law (leading axes) at every compute (last axis)."""
        x = np.asarray(compute, dtype=float) / self.c_ref
        e, a, alpha = (np.asarray(v)[..., None] for v in (self.e, self.a, self.alpha))
        return e + a * x ** (-alpha)

    def compute_for(self, loss: np.ndarray) -> np.ndarray:
        """The compute at which each law reaches `loss` (same leading axes); inf at or below E."""
        e, a, alpha = (np.asarray(v)[..., None] for v in (self.e, self.a, self.alpha))
        gap = loss - e
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            x = (a / np.where(gap > 0, gap, np.nan)) ** (1 / alpha)
        return np.where(gap > 0, x * self.c_ref, np.inf)

    def __getitem__(self, index: int | slice) -> Laws:
        return Laws(self.e[index], self.a[index], self.alpha[index], self.c_ref)


def _solve(alpha: np.ndarray, lx: np.ndarray, loss: np.ndarray, w: np.ndarray) -> tuple:
    """Best (E, A) ≥ 0 and the weighted squared error for each alpha.

    alpha: (B, G); lx, loss, w: (B, R) -> e, a, sse: (B, G).
    """
    c = np.exp(-alpha[..., None] * lx[:, None, :])  # (B, G, R): (C / c_ref)^(-alpha)
    y, w = loss[:, None, :], w[:, None, :]
    sw, swy = w.sum(-1), (w * y).sum(-1)
    swc, swcc, swcy = (w * c).sum(-1), (w * c * c).sum(-1), (w * c * y).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        det = sw * swcc - swc * swc
        free_e = (swcc * swy - swc * swcy) / det
        free_a = (sw * swcy - swc * swy) / det
    # The constrained optimum is the free one when feasible, else one on an edge (E = 0 or A = 0).
    candidates = [
        (free_e, free_a),
        (np.zeros_like(swcy), swcy / swcc),  # E = 0
        (swy / sw, np.zeros_like(swy)),  # A = 0: loss flat in compute
    ]
    best_e, best_a = candidates[-1]
    best = ((w * (y - best_e[..., None]) ** 2).sum(-1)).copy()
    for e, a in candidates[:-1]:
        with np.errstate(invalid="ignore", over="ignore"):
            sse = (w * (y - e[..., None] - a[..., None] * c) ** 2).sum(-1)
        ok = (e >= 0) & (a >= 0) & np.isfinite(sse) & (sse < best)
        best_e, best_a = np.where(ok, e, best_e), np.where(ok, a, best_a)
        best = np.where(ok, sse, best)
    return best_e, best_a, best


def fit_laws(compute: np.ndarray, loss: np.ndarray, counts: np.ndarray, c_ref: float) -> Laws:
    """Fit one law per row. compute, loss: (B, R) rung means; counts: (R,) seeds per rung."""
    compute, loss = np.atleast_2d(compute).astype(float), np.atleast_2d(loss).astype(float)
    lx = np.log(compute / c_ref)
    w = np.asarray(counts, dtype=float) / loss**2  # relative error, each seed counted once
    batch = len(loss)
    log_lo, log_hi = np.log(ALPHA_RANGE)
    grid = np.broadcast_to(np.exp(np.linspace(log_lo, log_hi, _COARSE)), (batch, _COARSE))
    step = (log_hi - log_lo) / (_COARSE - 1)
    for level in range(_LEVELS + 1):
        e, a, sse = _solve(grid, lx, loss, w)
        best = np.argmin(sse, axis=1)
        rows = np.arange(batch)
        centre = np.log(grid[rows, best])
        if level == _LEVELS:
            return Laws(e[rows, best], a[rows, best], np.exp(centre), c_ref)
        # Around the best point: one coarse step either side, finer.
        offsets = np.linspace(-step, step, _FINE)
        grid = np.exp(np.clip(centre[:, None] + offsets, log_lo, log_hi))
        step = 2 * step / (_FINE - 1)
    raise AssertionError("unreachable")


def resample_means(
    values: np.ndarray, n_boot: int, rng: np.random.Generator, correct: bool = True
) -> np.ndarray:
    """(n_boot,) means of seeds resampled with replacement, deviations scaled by sqrt(n/(n-1))."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    mean = values.mean()
    if n < 2:
        return np.full(n_boot, mean)
    draws = values[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    scale = np.sqrt(n / (n - 1)) if correct else 1.0
    return mean + scale * (draws - mean)


def resample_pooled(cells: list[np.ndarray], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, R) rung means, each rung's seeds drawn from the deviations of every rung's seeds
    from their rung's mean (pooled over the R rungs), scaled by sqrt(N/(N-R)) for the R means
    they were measured from (N seeds in all)."""
    cells = [np.asarray(c, dtype=float) for c in cells]
    pool = np.concatenate([c - c.mean() for c in cells])
    n_total, n_cells = len(pool), len(cells)
    scale = np.sqrt(n_total / (n_total - n_cells)) if n_total > n_cells else 0.0
    columns = []
    for cell in cells:
        draws = pool[rng.integers(0, n_total, size=(n_boot, len(cell)))].mean(axis=1)
        columns.append(cell.mean() + scale * draws)
    return np.stack(columns, axis=1)


def multiplier(variant: Laws, baseline: Laws, compute: np.ndarray | float) -> np.ndarray:
    """Compute the baseline needs to reach the variant's loss at `compute`, over `compute`.

    > 1: the variant is better; inf where the variant's loss is at or below the baseline's E
    (the baseline never gets there). Leading axes: the laws'; last axis: compute's.
    """
    compute = np.atleast_1d(np.asarray(compute, dtype=float))
    return baseline.compute_for(variant.loss(compute)) / compute


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, ...]:
    """The percentile bootstrap interval over axis 0 (inf samples kept: an end may be inf)."""
    big = np.finfo(float).max
    finite = np.where(np.isposinf(samples), big, samples)
    tails = [(1 - level) / 2, (1 + level) / 2]
    lo, hi = np.quantile(finite, tails, axis=0)
    return tuple(np.where(q > big / 2, np.inf, q) for q in (lo, hi))
