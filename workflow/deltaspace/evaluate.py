"""Scoring a split: tokenise once into batches, then score any number of vectors on them."""
from __future__ import annotations

import dataclasses
from typing import Callable

import pandas as pd
import torch

from .backbones import Backbone, ScoringBatch
from .tasks import Example, score_all


def prepare_batches(backbone: Backbone, examples: list[Example], batch_size: int, task: str,
                    device: torch.device) -> list[ScoringBatch]:
    """Batches of up to `batch_size` examples of similar input length, shortest first.

    In file order a split of real sentences pads to 1.6-1.8x its tokens; sorted, almost nothing is padded.
    The metrics pair each prediction with its own gold label, so they do not depend on the order."""
    order = backbone.order_by_input_length(examples, task)
    return [dataclasses.replace(backbone.prepare([examples[i] for i in order[k: k + batch_size]], task),
                                example_ids=tuple(order[k: k + batch_size])).to(device)
            for k in range(0, len(order), batch_size)]


@torch.no_grad()
def predict(score: Callable[[ScoringBatch], torch.Tensor], batches: list[ScoringBatch]) -> tuple[list[int], list[int]]:
    """(predicted, gold) candidate indices over all batches."""
    predicted, gold = [], []
    for batch in batches:
        predicted += score(batch).argmax(-1).tolist()
        gold += batch.labels.tolist()
    return predicted, gold


def evaluate(score: Callable[[ScoringBatch], torch.Tensor], batches: list[ScoringBatch]) -> dict[str, float]:
    """accuracy and macro-F1 of a scoring function (a model, or a vector bound to the functional forward)."""
    return score_all(*predict(score, batches))


def evaluate_examples(score: Callable[[ScoringBatch], torch.Tensor],
                      batches: list[ScoringBatch]) -> tuple[dict[str, float], pd.DataFrame]:
    """The metrics, and each example's prediction in split order (columns example, gold, pred): what the paired
    bootstrap resamples."""
    predicted, gold = predict(score, batches)
    ids = [i for batch in batches for i in batch.example_ids]
    frame = pd.DataFrame({"example": ids, "gold": gold, "pred": predicted}).sort_values("example", ignore_index=True)
    return score_all(predicted, gold), frame


def predictions_table(columns: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One column of predicted candidate indices per scored vector (e.g. init, learned), beside the gold label,
    one row per test example in split order."""
    frames = list(columns.values())
    table = frames[0][["example", "gold"]].copy()
    for name, frame in columns.items():
        if not frame["example"].equals(table["example"]) or not frame["gold"].equals(table["gold"]):
            raise ValueError(f"predictions {name!r} were made on other examples than {next(iter(columns))!r}")
        table[name] = frame["pred"].to_numpy()
    return table
