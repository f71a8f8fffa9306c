"""Classification metrics over predicted and gold candidate indices (pure numpy)."""

from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

import numpy as np


def _as_label_arrays(pred: Sequence[int], gold: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    pred_array, gold_array = np.asarray(pred).ravel(), np.asarray(gold).ravel()
    if pred_array.shape != gold_array.shape:
        raise ValueError(f"pred has {pred_array.size} labels but gold has {gold_array.size}")
    if gold_array.size == 0:
        raise ValueError("cannot score an empty set of predictions")
    return pred_array, gold_array


def accuracy(pred: Sequence[int], gold: Sequence[int]) -> float:
    pred_array, gold_array = _as_label_arrays(pred, gold)
    return float(np.mean(pred_array == gold_array))


def macro_f1(pred: Sequence[int], gold: Sequence[int]) -> float:
    """Unweighted mean F1 over every label seen in gold or predictions."""
    pred_array, gold_array = _as_label_arrays(pred, gold)
    scores = []
    for label in np.union1d(gold_array, pred_array):
        true_positive = np.sum((pred_array == label) & (gold_array == label))
        false_positive = np.sum((pred_array == label) & (gold_array != label))
        false_negative = np.sum((pred_array != label) & (gold_array == label))
        # F1 = 2TP / (2TP + FP + FN); the label occurs somewhere, so the denominator is > 0.
        scores.append(2 * true_positive / (2 * true_positive + false_positive + false_negative))
    return float(np.mean(scores))


def majority_label(train_labels: Sequence[int]) -> int:
    """Most common train label; ties go to the smallest label so the choice is deterministic."""
    counts = Counter(int(label) for label in train_labels)
    if not counts:
        raise ValueError("cannot pick a majority label from an empty train set")
    return min(counts, key=lambda label: (-counts[label], label))


METRICS: dict[str, Callable[[Sequence[int], Sequence[int]], float]] = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
}


def majority_baseline(train_labels: Sequence[int], test_labels: Sequence[int], metric: str = "accuracy") -> float:
    """Test score (`metric`) of always predicting the most common train label."""
    return METRICS[metric]([majority_label(train_labels)] * len(test_labels), test_labels)


def score_all(pred: Sequence[int], gold: Sequence[int]) -> dict[str, float]:
    return {name: metric(pred, gold) for name, metric in METRICS.items()}
