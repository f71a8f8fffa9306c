"""The reference's seven metrics over predicted and gold output TEXTS, as a registry (METRICS: name -> Metric).

They are those of the paper's code (thunlp/Unified-DeltaTuning, src/dataloader/metrics_t5.py): each example has
a predicted text and a tuple of gold texts (its references; the first is "the" gold). Two kinds, so that the
paired bootstrap (deltaspace.intervals) resamples them cheaply:
- MeanMetric: the mean of one score per example (accuracy, exact_match, qa_f1, rouge_l); score the examples once,
  then resample the mean.
- CorpusMetric: a statistic of the whole set (macro_f1, matthews_corr, pearson); encode the texts once into
  numeric arrays (label codes, floats), then recompute the statistic on resampled arrays, vectorized.
A task's metric is named in its config entry (`primary_metric`) or in a metric table (config/paper_tasks/
metrics.csv; deltaspace.metric_table). scikit-learn, scipy and rouge-score load on first use: planning imports
this module.
"""

from __future__ import annotations

import functools
import re
import string
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

Texts = Sequence[str]
References = Sequence[Sequence[str]]  # each example's gold texts, the first one first


# ---- the reference's per-example scores -------------------------------------------------------------------------

_PUNCTUATION = set(string.punctuation)


def _remove_punctuation(text: str) -> str:
    return "".join(ch for ch in text if ch not in _PUNCTUATION)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation and the articles a/an/the, collapse whitespace."""
    text = _remove_punctuation(text.lower())
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def accuracy_score(prediction: str, reference: str) -> float:
    return float(prediction.lower() == reference.lower())


def exact_match_score(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def qa_f1_score(prediction: str, reference: str) -> float:
    """SQuAD token F1 of the normalised texts; 0 without a common token."""
    predicted, gold = normalize_answer(prediction).split(), normalize_answer(reference).split()
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"])


def rouge_l_score(prediction: str, reference: str) -> float:
    """Rouge-L F-measure; 0 for a prediction of punctuation only (the reference's guard against empty outputs).
    The reference called the older `rouge` package; rouge-score tokenises its own way (lowercase, ASCII letters
    and digits only), so the two can differ slightly on the same texts."""
    if not _remove_punctuation(prediction):
        return 0.0
    return float(_rouge_scorer().score(reference, prediction)["rougeL"].fmeasure)


# ---- the registry -----------------------------------------------------------------------------------------------


def _checked(predictions: Texts, references: References) -> tuple[list[str], list[tuple[str, ...]]]:
    predictions = list(predictions)
    references = [(refs,) if isinstance(refs, str) else tuple(refs) for refs in references]
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} examples with references")
    if not predictions:
        raise ValueError("cannot score an empty set of predictions")
    for i, (prediction, refs) in enumerate(zip(predictions, references)):
        if not isinstance(prediction, str):
            raise ValueError(f"example {i}: the prediction must be a text, got {prediction!r}")
        if not refs or not all(isinstance(ref, str) for ref in refs):
            raise ValueError(f"example {i}: references must be one or more texts, got {list(refs)!r}")
    return predictions, references


@dataclass(frozen=True)
class Metric:
    name: str  # ours: config values, task.json, column names
    reference_name: str  # the reference code's (metrics_t5.py)

    def __call__(self, predictions: Texts, references: References) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class MeanMetric(Metric):
    """The mean over examples of each example's best score against any of its references."""

    example_score: Callable[[str, str], float]  # (prediction, one reference) -> score

    def example_scores(self, predictions: Texts, references: References) -> np.ndarray:
        predictions, references = _checked(predictions, references)
        return np.array([max(self.example_score(p, ref) for ref in refs) for p, refs in zip(predictions, references)],
                        dtype=float)

    def __call__(self, predictions: Texts, references: References) -> float:
        return float(np.mean(self.example_scores(predictions, references)))


@dataclass(frozen=True)
class CorpusMetric(Metric):
    """A statistic of the whole set against each example's first reference.

    `value` is the reference's own library call on the texts; `encode` turns texts into numeric arrays once and
    `statistic` recomputes the same value on them, vectorized over leading (resample) axes, for the bootstrap
    (tests/test_metrics.py checks that the two agree)."""

    value: Callable[[list[str], list[str]], float]  # (predictions, gold texts) -> value
    encode: Callable[[list[str], list[str]], tuple[np.ndarray, np.ndarray]]  # -> (predicted, gold) arrays
    statistic: Callable[..., np.ndarray]  # (predicted, gold, axis=-1) -> value(s)

    def encoded(self, predictions: Texts, references: References) -> tuple[np.ndarray, np.ndarray]:
        predictions, references = _checked(predictions, references)
        return self.encode(predictions, [refs[0] for refs in references])

    def __call__(self, predictions: Texts, references: References) -> float:
        predictions, references = _checked(predictions, references)
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore")  # an undefined correlation is NaN (pearson), not a warning
            return float(self.value(predictions, [refs[0] for refs in references]))


# Classification-F1: macro F1 over the GOLD labels only (the reference's labels=np.unique(gold)); a predicted text
# outside them counts only as a miss of its example's gold label.


def _macro_f1_value(predictions: list[str], gold: list[str]) -> float:
    from sklearn.metrics import f1_score

    return f1_score(gold, predictions, average="macro", labels=np.unique(gold))


def _label_codes(predictions: list[str], gold: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Gold labels -> 0..K-1 in sorted order; a prediction outside them -> -1."""
    labels = {label: code for code, label in enumerate(sorted(set(gold)))}
    return np.array([labels.get(p, -1) for p in predictions]), np.array([labels[g] for g in gold])


def _macro_f1_statistic(predicted: np.ndarray, gold: np.ndarray, axis: int = -1) -> np.ndarray:
    # Per label k: F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (predicted k + gold k), averaged over the labels present
    # in this (re)sample's gold. Counted with one bincount per array over (row, label) pairs.
    predicted, gold = np.moveaxis(predicted, axis, -1), np.moveaxis(gold, axis, -1)
    shape, n = gold.shape[:-1], gold.shape[-1]
    rows = int(np.prod(shape))
    predicted, gold = predicted.reshape(rows, n), gold.reshape(rows, n)
    k = int(max(gold.max(), predicted.max())) + 2  # one column per code; the last one for -1 (no gold label)
    offsets = (np.arange(rows) * k)[:, None]

    def counts(codes, where):
        cells = offsets + np.where(codes < 0, k - 1, codes)
        return np.bincount(cells[where], minlength=rows * k).reshape(rows, k)[:, :-1]

    gold_count = counts(gold, np.ones_like(gold, dtype=bool))
    predicted_count = counts(predicted, predicted >= 0)
    true_positive = counts(gold, predicted == gold)
    present = gold_count > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(present, 2 * true_positive / (predicted_count + gold_count), 0.0)
    return (f1.sum(-1) / present.sum(-1)).reshape(shape)


# Matthew-Correlation: "acceptable" is the positive class (glue-cola), anything else negative.


def _acceptable(texts: list[str]) -> np.ndarray:
    return np.array([float(text.strip() == "acceptable") for text in texts])


def _matthews_value(predictions: list[str], gold: list[str]) -> float:
    from sklearn.metrics import matthews_corrcoef

    return matthews_corrcoef(_acceptable(gold), _acceptable(predictions))


def _matthews_statistic(predicted: np.ndarray, gold: np.ndarray, axis: int = -1) -> np.ndarray:
    tp = np.sum(predicted * gold, axis=axis)
    fp = np.sum(predicted * (1 - gold), axis=axis)
    fn = np.sum((1 - predicted) * gold, axis=axis)
    tn = np.sum((1 - predicted) * (1 - gold), axis=axis)
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        # scikit-learn's convention: 0 where a class is missing from either side (the denominator is 0).
        return np.where(denominator > 0, (tp * tn - fp * fn) / denominator, 0.0)


# Pearson-Correlation: the texts as numbers. An unparsable prediction is NaN, so the correlation is NaN (as in the
# reference), without a warning; so is a correlation with a constant side (undefined).


def _as_float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        return float("nan")


def _floats(predictions: list[str], gold: list[str]) -> tuple[np.ndarray, np.ndarray]:
    for i, text in enumerate(gold):
        if np.isnan(_as_float(text)):
            raise ValueError(f"pearson: the gold output {text!r} of example {i} is not a number")
    return np.array([_as_float(p) for p in predictions]), np.array([_as_float(g) for g in gold])


def _pearson_value(predictions: list[str], gold: list[str]) -> float:
    from scipy.stats import pearsonr

    predicted, gold_values = _floats(predictions, gold)
    if np.isnan(predicted).any() or np.ptp(predicted) == 0 or np.ptp(gold_values) == 0:
        return float("nan")  # what scipy returns here too, minus its warnings
    return pearsonr(gold_values, predicted).statistic


def _pearson_statistic(predicted: np.ndarray, gold: np.ndarray, axis: int = -1) -> np.ndarray:
    x = predicted - predicted.mean(axis=axis, keepdims=True)
    y = gold - gold.mean(axis=axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.sum(x * y, axis=axis) / np.sqrt(np.sum(x * x, axis=axis) * np.sum(y * y, axis=axis))
    return np.clip(r, -1.0, 1.0)


METRICS: dict[str, Metric] = {metric.name: metric for metric in (
    MeanMetric("accuracy", "ACC", accuracy_score),
    MeanMetric("exact_match", "EM", exact_match_score),
    MeanMetric("qa_f1", "QA-F1", qa_f1_score),
    MeanMetric("rouge_l", "Rouge-L", rouge_l_score),
    CorpusMetric("macro_f1", "Classification-F1", _macro_f1_value, _label_codes, _macro_f1_statistic),
    CorpusMetric("matthews_corr", "Matthew-Correlation", _matthews_value,
                 lambda predictions, gold: (_acceptable(predictions), _acceptable(gold)), _matthews_statistic),
    CorpusMetric("pearson", "Pearson-Correlation", _pearson_value, _floats, _pearson_statistic),
)}


def check_metric(name: str) -> Metric:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose one of {sorted(METRICS)}")
    return METRICS[name]


def reported_metrics(primary: str) -> list[str]:
    """What every evaluation reports: accuracy, and the task's primary metric."""
    return list(dict.fromkeys(["accuracy", primary]))


def score_texts(predictions: Texts, references: References, names: Iterable[str]) -> dict[str, float]:
    """Metric name -> value of predicted texts against each example's references."""
    metrics = [check_metric(name) for name in dict.fromkeys(names)]
    return {metric.name: metric(predictions, references) for metric in metrics}


class Scores(dict):
    """Metric name -> value of one set of predictions: the metrics asked for, computed at once (what is reported
    and written out); reading any other metric of METRICS computes it from the same predictions (kept aside, not
    added), so a caller that knows only its own primary metric's name gets it."""

    def __init__(self, predictions: Texts, references: References, names: Iterable[str] = ("accuracy",)):
        super().__init__(score_texts(predictions, references, names))
        self.predictions, self.references = list(predictions), list(references)
        self._more: dict[str, float] = {}

    def __missing__(self, name: str) -> float:
        if name not in METRICS:
            raise KeyError(name)
        if name not in self._more:
            self._more[name] = METRICS[name](self.predictions, self.references)
        return self._more[name]


def majority_label(train_answers: Sequence[str]) -> str:
    """The most common train output text (first reference); ties go to the lexicographically smallest text."""
    counts = Counter(train_answers)
    if not counts:
        raise ValueError("cannot pick a majority output from an empty train set")
    return min(counts, key=lambda text: (-counts[text], text))


def majority_baseline(train_answers: Sequence[str], test_references: References, metric: str = "accuracy") -> float:
    """Test score (`metric`) of always predicting the most common train output text."""
    majority = majority_label(train_answers)
    return check_metric(metric)([majority] * len(test_references), test_references)


def improves(score: float, best: float | None) -> bool:
    """Whether a dev score replaces the best so far (checkpoint selection): higher wins; a NaN score (Pearson on
    constant predictions) never does, and any number beats a NaN best, so one NaN evaluation cannot pin the
    choice to its checkpoint."""
    if best is None:
        return True
    if np.isnan(score):
        return False
    return bool(np.isnan(best) or score > best)
