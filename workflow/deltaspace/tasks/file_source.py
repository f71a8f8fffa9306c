"""Examples from a local csv / tsv / jsonl file with configurable columns and labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import TaskDataError
from .example import Example
from .labels import examples_from_columns, label_mapping, require_columns
from .source_options import ColumnSource

FORMAT_BY_SUFFIX = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".txt": "tsv"}


def file_format(task: str, path: Path, declared: str | None) -> str:
    fmt = declared or FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt not in ("csv", "tsv", "jsonl"):
        raise TaskDataError(
            f"task {task!r}: key 'format' must be csv, tsv or jsonl for {path} "
            f"(cannot tell from suffix {path.suffix!r}), got {declared!r}"
        )
    return fmt


def _read_jsonl_columns(task: str, path: Path) -> tuple[list[str], dict[str, list[Any]]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise TaskDataError(f"task {task!r}: {path} line {line_number} is not valid JSON: {error}") from None
            if not isinstance(row, dict):
                raise TaskDataError(f"task {task!r}: {path} line {line_number} is not a JSON object")
            rows.append(row)
    present = list(dict.fromkeys(key for row in rows for key in row))
    return present, {column: [row.get(column) for row in rows] for column in present}


def _read_table_columns(task: str, path: Path, fmt: str) -> tuple[list[str], dict[str, list[Any]]]:
    try:
        # Text dtype keeps raw labels exactly as written (no 1 -> 1.0 surprises).
        frame = pd.read_csv(path, sep="," if fmt == "csv" else "\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise TaskDataError(f"task {task!r}: cannot read {fmt} file {path}: {error}") from None
    return list(frame.columns), {column: frame[column].tolist() for column in frame.columns}


def load_file_examples(task: str, spec: dict[str, Any]) -> list[Example]:
    path = Path(spec["path"])
    if not path.is_file():
        raise TaskDataError(f"task {task!r}: data file {path} does not exist (key 'path', cwd {Path.cwd()})")
    fmt = file_format(task, path, spec.get("format"))
    present, columns = _read_jsonl_columns(task, path) if fmt == "jsonl" else _read_table_columns(task, path, fmt)
    text_column = spec.get("text_column", ColumnSource.text_column)
    pair_column = spec.get("text_pair_column")
    label_column = spec.get("label_column", ColumnSource.label_column)
    origin = f"file {path}"
    require_columns(task, origin, present, [text_column, pair_column, label_column])
    mapping = label_mapping(task, spec.get("labels"), columns[label_column])
    pairs = columns[pair_column] if pair_column else None
    return examples_from_columns(task, origin, columns[text_column], columns[label_column], mapping, pairs)
