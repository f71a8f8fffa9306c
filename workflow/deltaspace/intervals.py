"""Evidence with intervals: relative gain, and paired stratified-bootstrap intervals of a score difference."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats

from .tasks.metrics import METRICS

# Elements of one resampled index array per vectorized batch: bounds memory on big test sets (~32 MB an array).
_RESAMPLE_ELEMENTS_PER_BATCH = 2**22


def gain_relative(subspace, init, own):
    """(subspace - init) / (own - init) * 100: the share of the tuning gain the subspace recovers.

    Scalars give a float; numpy arrays and pandas Series are handled elementwise.
    NaN where own - init <= 0 (no gain to recover: the ratio would flip sign or divide by zero) or any input is NaN.
    """
    tuning_gain = np.subtract(own, init, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.subtract(subspace, init, dtype=float) / tuning_gain * 100
    # NaN > 0 is False, so a NaN gain is masked too; multiplying keeps a Series' index.
    share = share * np.where(tuning_gain > 0, 1.0, np.nan)
    return float(share) if np.ndim(share) == 0 else share


def _accuracy_difference(pred_a, pred_b, gold, axis=-1):
    # Vectorized over resamples: hundreds of calls make the per-resample loop of METRICS too slow.
    return np.mean(pred_a == gold, axis=axis) - np.mean(pred_b == gold, axis=axis)


def _metric_difference(metric_name: str):
    metric = METRICS[metric_name]
    return lambda pred_a, pred_b, gold: metric(pred_a, gold) - metric(pred_b, gold)


def _checked_stratum(index: int, stratum) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred_a, pred_b, gold = (np.asarray(part) for part in stratum)
    shapes = [part.shape for part in (pred_a, pred_b, gold)]
    if any(len(shape) != 1 for shape in shapes):
        raise ValueError(f"stratum {index}: pred_a, pred_b and gold must be 1-D arrays, got shapes {shapes}")
    lengths = [shape[0] for shape in shapes]
    if len(set(lengths)) != 1:
        raise ValueError(f"stratum {index}: pred_a, pred_b and gold differ in length: {lengths}")
    if lengths[0] < 2:
        raise ValueError(f"stratum {index}: a bootstrap needs at least 2 examples, got {lengths[0]}")
    return pred_a, pred_b, gold


def difference_interval(strata: Sequence[tuple], metric: str | Sequence[str], n_resamples: int = 2000,
                        level: float = 0.95, seed: int | Sequence[int] = 0) -> dict:
    """Paired bootstrap interval of score(A) - score(B), pooled over strata by a stratified bootstrap.

    strata: (pred_a, pred_b, gold) triples of equal-length 1-D class-index arrays, one per (task, seed) test set.
    The estimate is the mean of the strata's observed differences; its bootstrap distribution is the mean of the
    strata's distributions, each stratum resampled on its own (a big task does not swamp a small one, and
    examples never cross tasks). metric: one name, or one per stratum (each task's primary metric, as the
    relative table averages them). seed: one for all (stratum k draws from [seed, k]), or one per stratum, so
    a stratum resamples alike in every pool it joins. Returns estimate, low, high, n_strata, n_examples.
    """
    if len(strata) == 0:
        raise ValueError("difference_interval needs at least one stratum, got an empty list")
    metrics = [metric] * len(strata) if isinstance(metric, str) else list(metric)
    if len(metrics) != len(strata):
        raise ValueError(f"{len(metrics)} metric names for {len(strata)} strata")
    for name in metrics:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; choose one of {sorted(METRICS)}")
    checked = [_checked_stratum(index, stratum) for index, stratum in enumerate(strata)]

    observed, distributions = [], []
    for index, ((pred_a, pred_b, gold), metric) in enumerate(zip(checked, metrics)):
        observed.append(METRICS[metric](pred_a, gold) - METRICS[metric](pred_b, gold))
        vectorized = metric == "accuracy"
        result = stats.bootstrap(
            (pred_a, pred_b, gold), _accuracy_difference if vectorized else _metric_difference(metric),
            paired=True, vectorized=vectorized, n_resamples=n_resamples, method="percentile",
            confidence_level=level, batch=max(1, _RESAMPLE_ELEMENTS_PER_BATCH // gold.size),
            # One stream per stratum: the seed alone fixes every stratum's resamples, whatever the others hold.
            rng=np.random.default_rng([seed, index] if isinstance(seed, int) else seed[index]))
        distributions.append(result.bootstrap_distribution)

    estimate = float(np.mean(observed))
    pooled = np.mean(distributions, axis=0)
    if np.ptp(pooled) == 0:
        # Every resample agrees (A and B identical): the interval is the point, not a NaN or a warning.
        low = high = estimate
    else:
        tail = (1 - level) / 2
        # The same quantile rule scipy's percentile method uses, so one stratum reproduces its interval.
        low, high = (float(bound) for bound in stats.quantile(pooled, np.array([tail, 1 - tail])))
    return {"estimate": estimate, "low": low, "high": high, "n_strata": len(checked),
            "n_examples": int(sum(gold.size for _, _, gold in checked))}


def significance_words(low: float, high: float, a: str = "A", b: str = "B", level: float = 0.95) -> str:
    """A short phrase for a summary sentence: which side of 0 the interval of a - b lies on, if any."""
    if math.isnan(low) or math.isnan(high):
        raise ValueError(f"interval bounds must be numbers, got low={low}, high={high}")
    ci = f"{level * 100:g}% CI"
    if low > 0:
        return f"{a} > {b} ({ci} excludes 0)"
    if high < 0:
        return f"{a} < {b} ({ci} excludes 0)"
    return f"no significant difference ({ci} includes 0)"
