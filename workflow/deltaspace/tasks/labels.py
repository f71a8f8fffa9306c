"""Turn text/label columns into Examples through a raw-label -> answer-text mapping."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .errors import TaskDataError
from .example import Example

PAIR_SEPARATOR = " [SEP] "


def raw_label_key(value: Any) -> str:
    """Canonical text of a raw label so YAML keys, CSV text and JSON numbers compare equal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "item"):  # numpy scalars
        return raw_label_key(value.item())
    return str(value).strip()


def _sort_key(key: str) -> tuple[int, float, str]:
    # Numeric-looking labels sort as numbers (2 before 10), the rest as text.
    try:
        return (0, float(key), key)
    except ValueError:
        return (1, 0.0, key)


def label_mapping(task: str, labels: Any, raw_values: Sequence[Any]) -> dict[str, str]:
    """Ordered {raw key: answer text}; defaults to the sorted distinct raw values as text."""
    if labels is None:
        keys = sorted({raw_label_key(v) for v in raw_values}, key=_sort_key)
        if len(keys) < 2:
            raise TaskDataError(
                f"task {task!r}: the data holds fewer than two distinct label values {keys}; "
                f"list every answer under key 'labels'"
            )
        return {key: key for key in keys}
    if isinstance(labels, (list, tuple)):
        # A list names the answers of raw labels 0, 1, 2, ...
        labels = dict(enumerate(labels))
    if not isinstance(labels, Mapping) or len(labels) < 2:
        raise TaskDataError(
            f"task {task!r}: key 'labels' must map at least two raw label values to answer texts, got {labels!r}"
        )
    mapping = {raw_label_key(raw): str(answer).strip() for raw, answer in labels.items()}
    answers = list(mapping.values())
    if len(set(answers)) != len(answers) or not all(answers):
        raise TaskDataError(f"task {task!r}: key 'labels' needs distinct, non-empty answer texts, got {labels!r}")
    return mapping


def require_columns(task: str, origin: str, present: Sequence[str], wanted: Sequence[str | None]) -> None:
    for column in wanted:
        if column is not None and column not in present:
            raise TaskDataError(
                f"task {task!r}: {origin} has no column {column!r}; columns present: {list(present)}"
            )


def examples_from_columns(
    task: str,
    origin: str,
    texts: Sequence[Any],
    raw_labels: Sequence[Any],
    mapping: Mapping[str, str],
    pairs: Sequence[Any] | None = None,
) -> list[Example]:
    """One Example per row; rows with empty text are skipped, unknown labels are an error."""
    candidates = tuple(mapping.values())
    index_of = {raw: index for index, raw in enumerate(mapping)}
    examples = []
    for row, (text, raw) in enumerate(zip(texts, raw_labels)):
        key = raw_label_key(raw)
        if key not in index_of:
            raise TaskDataError(
                f"task {task!r}: {origin} row {row + 1} has label value {key!r} not in the known labels "
                f"{list(index_of)}; add it under 'labels'"
            )
        text = "" if text is None else str(text).strip()
        if pairs is not None:
            second = "" if pairs[row] is None else str(pairs[row]).strip()
            text = f"{text}{PAIR_SEPARATOR}{second}"
        if text.strip():
            examples.append(Example(input=text, candidates=candidates, label=index_of[key]))
    return examples
