"""Prepare one task: load, de-duplicate, split, and write the split files plus the task's summary."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..paths import TaskData
from .errors import TaskDataError
from .example import Example
from .leakage import corpus_keys, write_corpus_keys
from .metrics import majority_baseline, reported_metrics
from .package_data import DEFAULT_WHEELS_DIR
from .raw_task import SPLIT_NAMES, RawTask
from .sources import load_task
from .split import dedupe, remove_cross_split_duplicates, stratified_split, subsample_given_splits
from .split_files import atomic_write_bytes, encode_examples

SUMMARY_FORMAT_VERSION = 1


def validate_sizes(task: str, sizes: Mapping[str, Any]) -> dict[str, int]:
    if not isinstance(sizes, Mapping) or set(sizes) != set(SPLIT_NAMES):
        raise TaskDataError(f"task {task!r}: sizes must give exactly {list(SPLIT_NAMES)}, got {sizes!r}")
    for split, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise TaskDataError(f"task {task!r}: size of split {split!r} must be a positive integer, got {size!r}")
    return {split: sizes[split] for split in SPLIT_NAMES}


def _json_safe(value: Any) -> Any:
    # Config values may hold Paths, tuples or int label keys; task.json needs plain JSON.
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _label_counts(examples: Sequence[Example], n_labels: int) -> dict[str, int]:
    """Examples per gold candidate index; generative examples (no candidates) have none and are not counted."""
    counts = Counter(example.label for example in examples if not example.generative)
    return {str(label): counts[label] for label in range(n_labels)}


def _split_examples(raw: RawTask, sizes: dict[str, int], seed: int) -> tuple[dict[str, list[Example]], dict, int]:
    if raw.given_splits is None:
        unique, dedup_notes = dedupe(raw.examples)
        return stratified_split(unique, sizes, seed), dedup_notes, len(unique)
    cleaned, dedup_notes = remove_cross_split_duplicates(raw.given_splits)
    return subsample_given_splits(cleaned, sizes, seed), dedup_notes, sum(map(len, cleaned.values()))


def prepare_task(
    task_name: str,
    spec: Mapping[str, Any],
    sizes: Mapping[str, int],
    seed: int,
    out,
    wheels_dir: Path | str | None = DEFAULT_WHEELS_DIR,
    crossfit_dir: Path | str | None = None,
) -> dict[str, Any]:
    """Write the TaskData files `out` (or into that folder): the split files, the leak keys of the whole corpus
    and the task's summary; return the summary."""
    sizes = validate_sizes(task_name, sizes)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TaskDataError(f"task {task_name!r}: seed must be an integer, got {seed!r}")
    raw = load_task(task_name, spec, wheels_dir, crossfit_dir)
    splits, dedup_notes, n_unique = _split_examples(raw, sizes, seed)
    for split in SPLIT_NAMES:
        if not splits[split]:
            raise TaskDataError(
                f"task {task_name!r}: split {split!r} is empty ({n_unique} usable examples after "
                f"de-duplication, sizes {sizes}); the source has too little data"
            )
    out = TaskData.of(out)
    files = {}
    for split in SPLIT_NAMES:
        data = encode_examples(splits[split])
        atomic_write_bytes(out.split(split), data)
        # Relative to the summary: the folder of split files can move as one.
        files[split] = {"path": os.path.relpath(out.split(split), Path(out.summary).parent), "examples": len(splits[split]),
                        "sha256": hashlib.sha256(data).hexdigest()}
    # Every text the source holds, not only the sampled ones: another data_seed would draw others.
    write_corpus_keys(out.corpus, corpus_keys(example.input for example in raw.all_examples()))
    n_labels = max(len(example.candidates) for split in splits.values() for example in split)
    kind = raw.kind
    if kind == "generative" and spec.get("scoring") == "rank":
        raise TaskDataError(f"task {task_name!r} has free-text outputs (no candidates to rank): remove its "
                            f"'scoring: rank' (it then generates)")
    # The majority floor over output texts: the most common train answer, scored like any prediction.
    train_answers = [example.answer for example in splits["train"]]
    test_references = [example.references for example in splits["test"]]
    summary = {
        "format_version": SUMMARY_FORMAT_VERSION,
        "task": task_name,
        "source": _json_safe(dict(spec)),
        "kind": kind,
        # The task's own scoring mode, if its entry sets one (else the backbone's default; backbones.task_format).
        "scoring": spec.get("scoring"),
        "candidates": list(splits["train"][0].candidates) if kind == "classification" and n_labels else None,
        "seed": seed,
        "sizes_requested": sizes,
        "sizes": {split: len(splits[split]) for split in SPLIT_NAMES},
        "examples_loaded": len(raw.all_examples()),
        "examples_after_dedup": n_unique,
        "dedup": dedup_notes,
        "loader_notes": raw.notes,
        "label_counts": {split: _label_counts(splits[split], n_labels) for split in SPLIT_NAMES},
        "majority_test_accuracy": majority_baseline(train_answers, test_references),
        # The floor beside a score: in the task's own metric (always-majority has macro-F1 far below its accuracy).
        "majority_test_score": majority_baseline(train_answers, test_references, raw.primary_metric),
        "primary_metric": raw.primary_metric,
        "metrics": reported_metrics(raw.primary_metric),  # what every evaluation of the task reports
        "files": files,
    }
    # task.json goes last: its presence means the files beside it are complete.
    text = json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_bytes(Path(out.summary), text.encode("utf-8"))
    return summary


def prepare_task_job(task: str, spec: Mapping[str, Any], out) -> dict[str, Any]:
    """The prepare_task rule's job: its spec holds the task's config entry (with the metric table's
    primary_metric filled in, workflow/rules/common.smk), the split sizes, the data seed and where the data
    wheels and CrossFit folders are."""
    return prepare_task(task, spec["task"], spec["sizes"], spec["seed"], out, wheels_dir=spec.get("wheels_dir"),
                        crossfit_dir=spec.get("crossfit_dir"))
