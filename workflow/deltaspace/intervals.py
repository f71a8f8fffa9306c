"""Evidence with intervals: relative gain, and paired stratified-bootstrap intervals of a score difference."""
from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np
from scipy import stats

from .tasks.metrics import MeanMetric, Metric, check_metric

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


def _mean_difference(a, b, axis=-1):
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def _checked_stratum(index: int, stratum) -> tuple[list[str], list[str], list[tuple[str, ...]]]:
    if len(stratum) != 3:
        raise ValueError(f"stratum {index}: expected (pred_a, pred_b, references), got {len(stratum)} parts")
    pred_a, pred_b, references = (list(part) for part in stratum)
    lengths = [len(part) for part in (pred_a, pred_b, references)]
    if len(set(lengths)) != 1:
        raise ValueError(f"stratum {index}: pred_a, pred_b and references differ in length: {lengths}")
    if lengths[0] < 2:
        raise ValueError(f"stratum {index}: a bootstrap needs at least 2 examples, got {lengths[0]}")
    references = [(refs,) if isinstance(refs, str) else tuple(refs) for refs in references]
    return pred_a, pred_b, references


def _resampled(index: int, stratum, metric: Metric) -> tuple[float, tuple[np.ndarray, ...], Callable]:
    """(observed score(A) - score(B), the arrays to resample in pairs, their vectorized statistic): a mean metric
    scores each example once and resamples the scores; a corpus metric encodes the texts once and recomputes its
    statistic on resampled codes."""
    pred_a, pred_b, references = _checked_stratum(index, stratum)
    observed = metric(pred_a, references) - metric(pred_b, references)
    if isinstance(metric, MeanMetric):
        return observed, (metric.example_scores(pred_a, references), metric.example_scores(pred_b, references)), \
            _mean_difference
    (codes_a, gold), (codes_b, _) = metric.encoded(pred_a, references), metric.encoded(pred_b, references)

    def difference(a, b, g, axis=-1):
        return metric.statistic(a, g, axis=axis) - metric.statistic(b, g, axis=axis)

    return observed, (codes_a, codes_b, gold), difference


def difference_interval(strata: Sequence[tuple], metric: str | Sequence[str], n_resamples: int = 2000,
                        level: float = 0.95, seed: int | Sequence[int] = 0) -> dict:
    """Paired bootstrap interval of score(A) - score(B), pooled over strata by a stratified bootstrap.

    strata: (pred_a, pred_b, references) triples, one per (task, seed) test set: A's and B's predicted texts and
    each example's gold texts (a tuple, first the gold; a plain text stands for one), all of one length.
    The estimate is the mean of the strata's observed differences; its bootstrap distribution is the mean of the
    strata's distributions, each stratum resampled on its own (a big task does not swamp a small one, and
    examples never cross tasks). metric: one name, or one per stratum (each task's primary metric, as the
    relative table averages them). seed: one for all (stratum k draws from [seed, k]), or one per stratum, so
    a stratum resamples alike in every pool it joins. Returns estimate, low, high, n_strata, n_examples.
    A correlation undefined on the test set or on a resample (pearson: a constant or unparsable side) makes
    the interval NaN.
    """
    if len(strata) == 0:
        raise ValueError("difference_interval needs at least one stratum, got an empty list")
    names = [metric] * len(strata) if isinstance(metric, str) else list(metric)
    if len(names) != len(strata):
        raise ValueError(f"{len(names)} metric names for {len(strata)} strata")
    metrics = [check_metric(name) for name in names]

    observed, distributions, n_examples = [], [], 0
    for index, (stratum, stratum_metric) in enumerate(zip(strata, metrics)):
        difference, data, statistic = _resampled(index, stratum, stratum_metric)
        observed.append(difference)
        n_examples += len(data[0])
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NaN resamples of an undefined correlation
            result = stats.bootstrap(
                data, statistic, paired=True, vectorized=True, n_resamples=n_resamples, method="percentile",
                confidence_level=level, batch=max(1, _RESAMPLE_ELEMENTS_PER_BATCH // len(data[0])),
                # One stream per stratum: the seed alone fixes every stratum's resamples, whatever the others hold.
                rng=np.random.default_rng([seed, index] if isinstance(seed, int) else seed[index]))
        distributions.append(result.bootstrap_distribution)

    estimate = float(np.mean(observed))
    pooled = np.mean(distributions, axis=0)
    if np.isnan(pooled).any():
        low = high = float("nan")
    elif np.ptp(pooled) == 0:
        # Every resample agrees (A and B identical): the interval is the point, not a NaN or a warning.
        low = high = estimate
    else:
        tail = (1 - level) / 2
        # The same quantile rule scipy's percentile method uses, so one stratum reproduces its interval.
        low, high = (float(bound) for bound in stats.quantile(pooled, np.array([tail, 1 - tail])))
    return {"estimate": estimate, "low": low, "high": high, "n_strata": len(strata), "n_examples": n_examples}


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
