"""Which way is better for a metric, and a one-sided test stated as "better" or "worse".

A metric's mode is the runs' `optimized_mode` when it is their optimized metric (in any stage),
else read from its name: min for losses and perplexities, max for accuracies, F1, BLEU and
exact match. scipy's `greater`/`less` are accepted only where they mean "the variant is
better": `greater` on a loss tests that the variant is worse, which no one means by it.
"""

from __future__ import annotations

import yaml

from attnlab.compare.runs import Run

LOWER_IS_BETTER = ("loss", "ppl", "perplexity", "nll", "bpc", "bpb", "wer", "cer")
HIGHER_IS_BETTER = ("acc", "accuracy", "f1", "bleu", "exact_match", "mcc", "auc")
ALTERNATIVES = ("two-sided", "better", "worse", "greater", "less")


def metric_mode(metric: str, runs: list[Run]) -> str | None:
    """ "min", "max" or None (not known) for `metric`, e.g. test/loss."""
    name = metric.split("/", 1)[-1]
    for run in runs:
        optimized = str(run.result.get("optimized_metric") or "")
        config = run.path / ".hydra" / "config.yaml"
        if optimized.split("/", 1)[-1] == name and config.exists():
            mode = (yaml.safe_load(config.read_text()) or {}).get("optimized_mode")
            if mode in ("min", "max"):
                return mode
    if name in LOWER_IS_BETTER:
        return "min"
    return "max" if name in HIGHER_IS_BETTER else None


def reading(mode: str | None) -> str:
    """E.g. "lower is better" for a table's heading; "" where the mode is not known."""
    return {"min": "lower is better", "max": "higher is better"}.get(mode or "", "")


def scipy_alternative(alternative: str, metric: str, mode: str | None) -> str:
    """scipy's alternative (variant vs baseline) for `alternative`; ValueError (one line) where
    the metric's direction is not known for better/worse, or greater/less would mean worse."""
    if alternative == "two-sided":
        return alternative
    if alternative in ("better", "worse"):
        if mode is None:
            raise ValueError(
                f"--alternative {alternative}: whether lower or higher {metric} is better is "
                "not known (no optimized_mode names it); valid choices: two-sided, greater, less"
            )
        better = "less" if mode == "min" else "greater"
        return better if alternative == "better" else ("greater" if better == "less" else "less")
    if mode is not None and alternative != ("less" if mode == "min" else "greater"):
        raise ValueError(
            f"--alternative {alternative} on {metric}, where {reading(mode)}, tests that the "
            "variant is worse; say --alternative better (or worse, if that is the question)"
        )
    return alternative


def stated(alternative: str, mode: str | None) -> str:
    """The test's direction in words, for significance.md; `alternative` is scipy's."""
    if alternative == "two-sided":
        return "two-sided"
    word = "higher" if alternative == "greater" else "lower"
    if mode is None:
        return f"one-sided: variant {word} than baseline"
    better = (word == "lower") == (mode == "min")
    return f"one-sided: variant {'better' if better else 'worse'} ({word}) than baseline"
