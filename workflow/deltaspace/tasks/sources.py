"""Load a task's raw examples from the source its config entry (spec) names."""

from __future__ import annotations

import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

from ..options import REQUIRED, json_type
from .crossfit import load_crossfit_splits, resolve_crossfit_path
from .errors import TaskDataError
from .file_source import load_file_examples
from .huggingface_source import load_huggingface_examples
from .metrics import METRICS
from .package_data import DEFAULT_WHEELS_DIR
from .packaged import PACKAGED_TASKS, load_packaged
from .raw_task import RawTask
from .source_options import SOURCES, CrossFitSource


def _keys(source: str) -> tuple[set[str], set[str], set[str]]:
    """(required, allowed, string-valued) keys of a source's entries, from its declaration."""
    declared = fields(SOURCES[source])
    types = typing.get_type_hints(SOURCES[source])
    required = {f.name for f in declared if f.default is REQUIRED}
    strings = {f.name for f in declared if json_type(types[f.name]) == {"type": "string"}}
    return required, {"source"} | {f.name for f in declared}, strings


def validate_spec(task: str, spec: Any) -> dict[str, Any]:
    """The spec as a plain dict; any missing, unknown or mistyped key is a TaskDataError naming it."""
    if not isinstance(spec, Mapping):
        raise TaskDataError(f"task {task!r}: the task entry must be a mapping with a 'source' key, got {spec!r}")
    spec = dict(spec)
    source = spec.get("source")
    if source not in SOURCES:
        raise TaskDataError(f"task {task!r}: key 'source' must be one of {sorted(SOURCES)}, got {source!r}")
    required, allowed, strings = _keys(source)
    for key in sorted(required - spec.keys()):
        raise TaskDataError(f"task {task!r}: source {source!r} needs key {key!r}")
    for key in sorted(spec.keys() - allowed):
        raise TaskDataError(f"task {task!r}: unknown key {key!r} for source {source!r}; allowed: {sorted(allowed)}")
    for key in sorted(spec.keys() & strings):
        if not isinstance(spec[key], (str, Path)) or not str(spec[key]).strip():
            raise TaskDataError(f"task {task!r}: key {key!r} must be a non-empty string, got {spec[key]!r}")
    max_candidates = spec.get("max_candidates", CrossFitSource.max_candidates)
    if isinstance(max_candidates, bool) or not isinstance(max_candidates, int) or max_candidates < 2:
        raise TaskDataError(f"task {task!r}: key 'max_candidates' must be an integer >= 2, got {max_candidates!r}")
    split = spec.get("split", "")
    if not (isinstance(split, str) or (isinstance(split, list) and all(isinstance(s, str) for s in split))):
        raise TaskDataError(f"task {task!r}: key 'split' must be a split name or a list of names, got {split!r}")
    if "primary_metric" in spec and spec["primary_metric"] not in METRICS:
        raise TaskDataError(
            f"task {task!r}: key 'primary_metric' must be one of {sorted(METRICS)}, got {spec['primary_metric']!r}"
        )
    if source == "packaged" and spec.get("name", task) not in PACKAGED_TASKS:
        raise TaskDataError(
            f"task {task!r}: key 'name' {spec.get('name', task)!r} is not a packaged task; "
            f"known: {', '.join(PACKAGED_TASKS)}"
        )
    return spec


def load_task(
    task: str,
    spec: Mapping[str, Any],
    wheels_dir: Path | str | None = DEFAULT_WHEELS_DIR,
    crossfit_dir: Path | str | None = None,
) -> RawTask:
    """Every labelled example of a task (or its fixed splits, for CrossFit folders under crossfit_dir)."""
    spec = validate_spec(task, spec)
    source = spec["source"]
    primary_metric = spec.get("primary_metric")
    if source == "packaged":
        name = spec.get("name", task)
        primary_metric = primary_metric or PACKAGED_TASKS[name].primary_metric
        return RawTask(task, tuple(load_packaged(name, wheels_dir)), primary_metric=primary_metric)
    primary_metric = primary_metric or "accuracy"
    if source == "file":
        return RawTask(task, tuple(load_file_examples(task, spec)), primary_metric=primary_metric)
    if source == "huggingface":
        examples, unlabelled = load_huggingface_examples(task, spec)
        notes = {"unlabelled_rows_dropped": unlabelled} if unlabelled else {}
        return RawTask(task, tuple(examples), primary_metric=primary_metric, notes=notes)
    splits, notes = load_crossfit_splits(task, resolve_crossfit_path(task, spec, crossfit_dir))
    given = {split: tuple(examples) for split, examples in splits.items()}
    return RawTask(task, given_splits=given, primary_metric=primary_metric, notes=notes)
