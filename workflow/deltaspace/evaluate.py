"""Scoring a split: tokenise once into batches, then score any number of vectors on them.

Every metric compares predicted output TEXTS with each example's gold texts (deltaspace.tasks.metrics). A
scoring function maps a batch to (B, C) candidate scores, whose best candidate's text is the prediction
(`rank_predictions`), or directly to the B predicted texts (generate mode)."""
from __future__ import annotations

import dataclasses
import json
from typing import Callable, Sequence

import pandas as pd
import torch

from .backbones import Backbone, ScoringBatch
from .tasks import Example, Scores

# A batch -> (B, C) candidate scores (rank mode), or the B predicted texts (generate mode).
ScoreFunction = Callable[[ScoringBatch], "torch.Tensor | list[str]"]


def prepare_batches(backbone: Backbone, examples: list[Example], batch_size: int, task: str,
                    device: torch.device) -> list[ScoringBatch]:
    """Batches of up to `batch_size` examples of similar input length, shortest first, each knowing where its
    examples sit in the split.

    In file order a split of real sentences pads to 1.6-1.8x its tokens; sorted, almost nothing is padded.
    The metrics pair each prediction with its own gold texts, so they do not depend on the order."""
    order = backbone.order_by_input_length(examples, task)
    return [dataclasses.replace(backbone.prepare([examples[i] for i in order[k: k + batch_size]], task),
                                example_ids=tuple(order[k: k + batch_size])).to(device)
            for k in range(0, len(order), batch_size)]


def best_candidates(scores: torch.Tensor, examples: Sequence[Example]) -> list[str]:
    """The text of each example's highest-scoring candidate; scores: (N, C), rows in the examples' order."""
    return [example.candidates[best] for example, best in zip(examples, scores.argmax(-1).tolist(), strict=True)]


def rank_predictions(scores: torch.Tensor, batch: ScoringBatch) -> list[str]:
    """Rank classification: the predicted texts of a batch from its (B, C) candidate scores."""
    if batch.examples is None:
        raise ValueError("the batch does not know its examples; build it with Backbone.prepare")
    return best_candidates(scores, batch.examples)


def batch_predictions(score: ScoreFunction, batch: ScoringBatch) -> list[str]:
    """The predicted texts of one batch, whichever kind of output `score` gives."""
    output = score(batch)
    return rank_predictions(output, batch) if isinstance(output, torch.Tensor) else list(output)


@torch.no_grad()
def predict(score: ScoreFunction, batches: list[ScoringBatch]) -> tuple[list[str], list[tuple[str, ...]]]:
    """(predicted texts, each example's gold texts) over all batches, in batch order."""
    predicted, references = [], []
    for batch in batches:
        predicted += batch_predictions(score, batch)
        references += [example.references for example in batch.examples]
    return predicted, references


def evaluate(score: ScoreFunction, batches: list[ScoringBatch], metrics: Sequence[str] = ("accuracy",)) -> Scores:
    """`metrics` (names; every evaluation reports accuracy and the task's primary metric, tasks.reported_metrics)
    of a scoring function (a model, or a vector bound to the functional forward). Any other metric can be read
    from the result too (tasks.Scores)."""
    return Scores(*predict(score, batches), metrics)


def evaluate_examples(score: ScoreFunction, batches: list[ScoringBatch],
                      metrics: Sequence[str] = ("accuracy",)) -> tuple[Scores, pd.DataFrame]:
    """The metrics, and each example's prediction in split order (columns example, gold, references, pred):
    what the paired bootstrap resamples."""
    predicted, references = predict(score, batches)
    ids = [i for batch in batches for i in batch.example_ids]
    frame = pd.DataFrame({"example": ids, "gold": [refs[0] for refs in references],
                          "references": [json.dumps(list(refs), ensure_ascii=False) for refs in references],
                          "pred": predicted})
    return Scores(predicted, references, metrics), frame.sort_values("example", ignore_index=True)


def predictions_table(columns: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """A predictions file (predictions.csv), one row per test example in split order: `example` (its position in
    the split), `gold` (its first gold text), `references` (all its gold texts, a JSON list, always written), then
    one column of predicted texts per scored vector (e.g. init, subspace). tables.read_predictions reads it."""
    keys = ["example", "gold", "references"]
    table = next(iter(columns.values()))[keys].copy()
    for name, frame in columns.items():
        if not frame[keys].equals(table[keys]):
            raise ValueError(f"predictions {name!r} were made on other examples than {next(iter(columns))!r}")
        table[name] = frame["pred"].to_numpy()
    return table
