"""deltaspace.intervals over predicted texts: expected values come from hand computation or a plain numpy bootstrap,
never the module."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from deltaspace.intervals import difference_interval, gain_relative, significance_words


def right_on(n_right: int, n: int) -> np.ndarray:
    """Predicted texts against an all-"yes" gold (GOLD): the first n_right are right, the rest wrong ("no")."""
    return np.array(["yes"] * n_right + ["no"] * (n - n_right))


def gold_of(n: int) -> np.ndarray:
    return np.array(["yes"] * n)


def correlated_stratum(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three-label stratum of texts, A right ~75% and B ~65%, their errors correlated through a shared uniform."""
    gold = rng.integers(0, 3, n)
    shared = rng.random(n)
    fresh = rng.random(n)
    a_right = shared < 0.75
    b_right = np.where(rng.random(n) < 0.5, shared, fresh) < 0.65
    wrong = (gold + 1) % 3
    names = np.array(["red", "green", "blue"])
    return names[np.where(a_right, gold, wrong)], names[np.where(b_right, gold, wrong)], names[gold]


def plain_bootstrap(strata, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Independent stratified paired bootstrap of the accuracy difference, one resample at a time."""
    differences = np.empty(n_resamples)
    for r in range(n_resamples):
        per_stratum = []
        for pred_a, pred_b, gold in strata:
            idx = rng.integers(0, gold.size, gold.size)
            per_stratum.append(np.mean(pred_a[idx] == gold[idx]) - np.mean(pred_b[idx] == gold[idx]))
        differences[r] = np.mean(per_stratum)
    return differences


# --- gain_relative ---------------------------------------------------------------------------------------------

def test_gain_relative_hand_numbers():
    assert gain_relative(0.8, 0.6, 1.0) == pytest.approx(50.0)  # 0.2 of a 0.4 gain
    assert gain_relative(0.5, 0.6, 1.0) == pytest.approx(-25.0)  # 0.1 below init, of a 0.4 gain
    assert isinstance(gain_relative(0.8, 0.6, 1.0), float)


@pytest.mark.parametrize("subspace, init, own", [(0.8, 0.6, 0.6), (0.8, 0.6, 0.5), (float("nan"), 0.6, 1.0),
                                                 (0.8, float("nan"), 1.0), (0.8, 0.6, float("nan"))])
def test_gain_relative_is_nan_without_gain_or_with_nan(subspace, init, own):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(gain_relative(subspace, init, own))


def test_gain_relative_elementwise_keeps_series_index():
    own = pd.Series([1.0, 1.0, 0.5, 0.6], index=list("wxyz"))
    subspace = pd.Series([0.8, 0.5, 0.7, 0.9], index=list("wxyz"))
    share = gain_relative(subspace, 0.6, own)
    assert list(share.index) == list("wxyz")
    assert share.iloc[:2].tolist() == pytest.approx([50.0, -25.0])
    assert share.iloc[2:].isna().all()
    array_share = gain_relative(np.array([0.8, 0.5]), np.array([0.6, 0.6]), np.array([1.0, 0.6]))
    assert array_share[0] == pytest.approx(50.0) and math.isnan(array_share[1])


# --- difference_interval -----------------------------------------------------------------------------------------

def test_estimate_on_hand_made_stratum():
    gold = gold_of(10)
    result = difference_interval([(right_on(7, 10), right_on(4, 10), gold)], "accuracy", n_resamples=500)
    assert result["estimate"] == pytest.approx(0.7 - 0.4, abs=1e-12)
    assert (result["n_strata"], result["n_examples"]) == (1, 10)
    assert result["low"] <= result["estimate"] <= result["high"]


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_identical_predictions_give_a_point_interval(metric):
    rng = np.random.default_rng(3)
    names = np.array(["a", "b", "c"])
    gold = names[rng.integers(0, 3, 40)]
    pred = names[rng.integers(0, 3, 40)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's degenerate-distribution warning must not escape either
        result = difference_interval([(pred, pred.copy(), gold)], metric, n_resamples=300)
    assert result["low"] == result["high"] == result["estimate"] == 0.0


def test_interval_contains_estimate_and_halves_with_four_times_the_data():
    stratum = correlated_stratum(200, np.random.default_rng(1))
    small = difference_interval([stratum], "accuracy", n_resamples=4000)
    large = difference_interval([tuple(np.tile(part, 4) for part in stratum)], "accuracy", n_resamples=4000)
    assert small["low"] < small["estimate"] < small["high"]
    assert large["estimate"] == pytest.approx(small["estimate"])
    ratio = (large["high"] - large["low"]) / (small["high"] - small["low"])
    assert 0.35 < ratio < 0.65  # half-width ~ 1/sqrt(n): 1/sqrt(4) = 0.5


def test_interval_agrees_with_a_plain_numpy_bootstrap():
    stratum = correlated_stratum(300, np.random.default_rng(7))
    result = difference_interval([stratum], "accuracy", n_resamples=5000, seed=11)
    reference = np.percentile(plain_bootstrap([stratum], 20000, np.random.default_rng(12)), [2.5, 97.5])
    # Monte Carlo error of either percentile is ~0.002 here; 0.01 also fails a 90% interval passed off as 95%.
    assert result["low"] == pytest.approx(reference[0], abs=0.01)
    assert result["high"] == pytest.approx(reference[1], abs=0.01)


def test_pooled_interval_is_a_stratified_bootstrap():
    # Sizes 300 and 60: pooling the examples would let the big stratum dominate; stratifying weighs them equally.
    rng = np.random.default_rng(5)
    strata = [correlated_stratum(300, rng), correlated_stratum(60, rng)]
    result = difference_interval(strata, "accuracy", n_resamples=5000, seed=2)
    reference = np.percentile(plain_bootstrap(strata, 10000, np.random.default_rng(6)), [2.5, 97.5])
    hand_estimate = np.mean([np.mean(a == g) - np.mean(b == g) for a, b, g in strata])
    assert result["estimate"] == pytest.approx(hand_estimate)
    assert result["low"] == pytest.approx(reference[0], abs=0.01)
    assert result["high"] == pytest.approx(reference[1], abs=0.01)
    assert (result["n_strata"], result["n_examples"]) == (2, 360)


def test_pooled_estimate_is_the_mean_of_strata_and_interval_lies_between_theirs():
    gold = gold_of(50)
    plus_two_tenths = (right_on(35, 50), right_on(25, 50), gold)  # 0.70 - 0.50
    # Same accuracy (0.6) on different examples: difference exactly 0, but resamples spread around it.
    even = (right_on(30, 50), right_on(30, 50)[::-1].copy(), gold)
    first = difference_interval([plus_two_tenths], "accuracy", n_resamples=2000)
    second = difference_interval([even], "accuracy", n_resamples=2000)
    pooled = difference_interval([plus_two_tenths, even], "accuracy", n_resamples=2000)
    assert first["estimate"] == pytest.approx(0.2) and second["estimate"] == pytest.approx(0.0)
    assert pooled["estimate"] == pytest.approx(0.1)
    assert min(first["low"], second["low"]) <= pooled["low"] <= pooled["high"] <= max(first["high"], second["high"])
    # Averaging two independent strata narrows the interval below the wider one's.
    assert pooled["high"] - pooled["low"] < max(first["high"] - first["low"], second["high"] - second["low"])


def test_macro_f1_estimate_by_hand():
    gold = ["x", "x", "x", "y", "y", "z"]
    pred_a = ["x", "x", "y", "y", "y", "z"]
    pred_b = ["x", "y", "y", "y", "w", "z"]
    # F1 = 2TP / (2TP + FP + FN), per gold label (a predicted "w" is no label: only a miss of its "y"):
    # A: x TP2 FP0 FN1 -> 4/5; y TP2 FP1 FN0 -> 4/5; z TP1 FP0 FN0 -> 1
    # B: x TP1 FP0 FN2 -> 2/4; y TP1 FP2 FN1 -> 2/5; z TP1 FP0 FN0 -> 1
    macro_a = (4 / 5 + 4 / 5 + 1) / 3
    macro_b = (2 / 4 + 2 / 5 + 1) / 3
    result = difference_interval([(pred_a, pred_b, gold)], "macro_f1", n_resamples=300)
    assert result["estimate"] == pytest.approx(macro_a - macro_b)
    assert -1.0 <= result["low"] <= result["high"] <= 1.0


def test_mean_text_metric_resamples_each_examples_score():
    """exact_match over texts with several references: a plain bootstrap of the per-example hits agrees."""
    # 300 examples: percentiles of a difference of means on a fine grid (multiples of 1/300)
    references = [("the cat", "a dog")] * 150 + [("yes",)] * 150
    pred_a = ["Cat!"] * 100 + ["bird"] * 50 + ["yes"] * 125 + ["no"] * 25  # hits: 100 + 125
    pred_b = ["a dog"] * 50 + ["bird"] * 100 + ["yes"] * 100 + ["no"] * 50  # hits: 50 + 100
    result = difference_interval([(pred_a, pred_b, references)], "exact_match", n_resamples=5000, seed=3)
    assert result["estimate"] == pytest.approx(225 / 300 - 150 / 300)
    hits_a = np.r_[np.ones(100), np.zeros(50), np.ones(125), np.zeros(25)]
    hits_b = np.r_[np.ones(50), np.zeros(100), np.ones(100), np.zeros(50)]
    rng = np.random.default_rng(4)
    idx = rng.integers(0, 300, (20000, 300))
    reference = np.percentile(hits_a[idx].mean(1) - hits_b[idx].mean(1), [2.5, 97.5])
    assert result["low"] == pytest.approx(reference[0], abs=0.01)
    assert result["high"] == pytest.approx(reference[1], abs=0.01)


def test_an_undefined_correlation_gives_a_nan_interval_without_warnings():
    gold = [str(i % 5) for i in range(20)]
    good = [str((i + 1) % 5) for i in range(20)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = difference_interval([(good, good[:3] + ["three"] + good[4:], gold)], "pearson", n_resamples=200)
    assert math.isnan(result["estimate"]) and math.isnan(result["low"]) and math.isnan(result["high"])


def test_same_inputs_and_seed_give_identical_output():
    strata = [correlated_stratum(80, np.random.default_rng(9)), correlated_stratum(40, np.random.default_rng(10))]
    for metric in ("accuracy", "macro_f1"):
        assert difference_interval(strata, metric, n_resamples=300, seed=4) == \
            difference_interval(strata, metric, n_resamples=300, seed=4)
    assert difference_interval(strata, "accuracy", n_resamples=300, seed=4) != \
        difference_interval(strata, "accuracy", n_resamples=300, seed=5)


def test_mismatched_lengths_name_the_stratum():
    good = (right_on(3, 5), right_on(2, 5), gold_of(5))
    bad = (right_on(3, 5), right_on(2, 4), gold_of(5))
    with pytest.raises(ValueError, match=r"stratum 1\b.*\[5, 4, 5\]"):
        difference_interval([good, bad], "accuracy")


def test_empty_strata_and_unknown_metric_are_refused():
    with pytest.raises(ValueError, match="empty"):
        difference_interval([], "accuracy")
    with pytest.raises(ValueError, match="unknown metric"):
        difference_interval([(right_on(3, 5), right_on(2, 5), gold_of(5))], "f2")


# --- significance_words ------------------------------------------------------------------------------------------

def test_significance_words():
    assert significance_words(0.01, 0.2, a="learned", b="random") == "learned > random (95% CI excludes 0)"
    assert significance_words(-0.3, -0.02, a="learned", b="random") == "learned < random (95% CI excludes 0)"
    assert significance_words(-0.1, 0.1) == "no significant difference (95% CI includes 0)"
    assert significance_words(0.0, 0.0) == "no significant difference (95% CI includes 0)"
    assert significance_words(0.01, 0.2, level=0.9) == "A > B (90% CI excludes 0)"
