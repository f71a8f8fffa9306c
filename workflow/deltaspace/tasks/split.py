"""De-duplication and seeded, label-stratified sampling of examples into train/dev/test."""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping, Sequence

import numpy as np

from .example import Example
from .raw_task import SPLIT_NAMES

# Test first: if data is short, evaluation splits are filled before train (sizes scale anyway).
DRAW_ORDER = ("test", "dev", "train")


def normalize_text(text: str) -> str:
    return " ".join(text.split())


def dedup_key(example: Example) -> tuple[str, tuple[str, ...]]:
    # Candidates are part of the key: one question with different options is a different item.
    return normalize_text(example.input), example.candidates


def dedupe(examples: Iterable[Example]) -> tuple[list[Example], dict[str, int]]:
    """First copy of every duplicate text; texts whose copies disagree on the label are all dropped."""
    groups: dict[tuple[str, tuple[str, ...]], list[Example]] = {}
    for example in examples:
        groups.setdefault(dedup_key(example), []).append(example)
    kept, duplicates, conflicting = [], 0, 0
    for copies in groups.values():
        if len({copy.label for copy in copies}) > 1:
            conflicting += len(copies)
            continue
        kept.append(copies[0])
        duplicates += len(copies) - 1
    return kept, {"duplicates_removed": duplicates, "conflicting_label_rows_dropped": conflicting}


def largest_remainder(weights: Mapping[int, int], total: int) -> dict[int, int]:
    """Integer shares of `total` proportional to `weights` (sum(weights) >= total), ties by key."""
    weight_sum = sum(weights.values())
    if weight_sum == 0 or total == 0:
        return {key: 0 for key in weights}
    exact = {key: total * weight / weight_sum for key, weight in weights.items()}
    shares = {key: int(value) for key, value in exact.items()}
    by_remainder = sorted(weights, key=lambda key: (-(exact[key] - shares[key]), key))
    for key in by_remainder[: total - sum(shares.values())]:
        shares[key] += 1
    return shares


def effective_sizes(requested: Mapping[str, int], available: int) -> dict[str, int]:
    """The requested sizes, scaled down proportionally when the data holds fewer examples."""
    if sum(requested.values()) <= available:
        return dict(requested)
    order = {split: i for i, split in enumerate(SPLIT_NAMES)}
    scaled = largest_remainder({order[s]: n for s, n in requested.items()}, available)
    return {split: scaled[order[split]] for split in requested}


def _pools_by_label(examples: Sequence[Example], rng: np.random.Generator) -> dict[int, list[Example]]:
    pools: dict[int, list[Example]] = {}
    for example in examples:
        pools.setdefault(example.label, []).append(example)
    return {label: [pool[i] for i in rng.permutation(len(pool))] for label, pool in sorted(pools.items())}


def _take_stratified(pools: dict[int, list[Example]], size: int, rng: np.random.Generator) -> list[Example]:
    # Shares follow what is left, so every split keeps the label proportions of the whole.
    quota = largest_remainder({label: len(pool) for label, pool in pools.items()}, size)
    taken = []
    for label, pool in pools.items():
        taken.extend(pool[: quota[label]])
        del pool[: quota[label]]
    return [taken[i] for i in rng.permutation(len(taken))]


def stratified_split(examples: Sequence[Example], sizes: Mapping[str, int], seed: int) -> dict[str, list[Example]]:
    """Disjoint, seeded, label-stratified train/dev/test samples of the given sizes (or fewer)."""
    rng = np.random.default_rng(seed)
    pools = _pools_by_label(examples, rng)
    targets = effective_sizes(sizes, len(examples))
    drawn = {split: _take_stratified(pools, targets[split], rng) for split in DRAW_ORDER}
    return {split: drawn[split] for split in SPLIT_NAMES}


def subsample_given_splits(
    splits: Mapping[str, Sequence[Example]], sizes: Mapping[str, int], seed: int
) -> dict[str, list[Example]]:
    """Fixed splits (CrossFit) kept as given, each cut down to its size by stratified sampling."""
    rng = np.random.default_rng(seed)
    result = {}
    for split in SPLIT_NAMES:
        examples = list(splits.get(split, ()))
        result[split] = _take_stratified(_pools_by_label(examples, rng), min(sizes[split], len(examples)), rng)
    return result


def remove_cross_split_duplicates(
    splits: Mapping[str, Sequence[Example]],
) -> tuple[dict[str, list[Example]], dict[str, int]]:
    """Dedupe each fixed split, then drop texts already in a split that is evaluated on (test > dev > train)."""
    cleaned: dict[str, list[Example]] = {}
    notes: Counter[str] = Counter()
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for split in ("test", "dev", "train"):
        kept, report = dedupe(splits.get(split, ()))
        notes.update(report)
        overlap = [example for example in kept if dedup_key(example) in seen]
        if overlap:
            notes[f"{split}_rows_also_in_another_split_dropped"] += len(overlap)
        cleaned[split] = [example for example in kept if dedup_key(example) not in seen]
        seen.update(dedup_key(example) for example in kept)
    return {split: cleaned[split] for split in SPLIT_NAMES}, dict(notes)
