"""Examples from a Hugging Face dataset: a hub name, or a local save_to_disk folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import TaskDataError
from .example import Example
from .labels import examples_from_columns, label_mapping, raw_label_key, require_columns
from .source_options import ColumnSource


def _is_saved_dataset(path: Path) -> bool:
    # save_to_disk writes dataset_info.json + state.json (Dataset) or dataset_dict.json (DatasetDict).
    return path.is_dir() and (
        (path / "dataset_dict.json").is_file()
        or ((path / "dataset_info.json").is_file() and (path / "state.json").is_file())
    )


def _load(task: str, spec: dict[str, Any]):
    import datasets  # heavy import, only when a task needs it

    path = str(spec["path"])
    try:
        if _is_saved_dataset(Path(path)):
            return datasets.load_from_disk(path)
        return datasets.load_dataset(path, spec.get("name"))
    except Exception as error:  # the hub raises many unrelated types: report them all the same way
        raise TaskDataError(
            f"task {task!r}: cannot load Hugging Face dataset path={path!r} name={spec.get('name')!r}: {error}"
        ) from error


def _select_splits(task: str, loaded, split: Any):
    """One Dataset: the named split(s), or every split pooled when none is named."""
    import datasets

    if isinstance(loaded, datasets.Dataset):
        # A saved single Dataset may remember its split name; a different requested one is a mistake.
        if isinstance(split, str) and loaded.split is not None and str(loaded.split) != split:
            raise TaskDataError(
                f"task {task!r}: key 'split' is {split!r} but the dataset holds only split {str(loaded.split)!r}"
            )
        return loaded
    names = [split] if isinstance(split, str) else list(split) if split else list(loaded.keys())
    missing = [name for name in names if name not in loaded]
    if missing:
        raise TaskDataError(
            f"task {task!r}: key 'split' names {missing} not in the dataset; splits present: {list(loaded.keys())}"
        )
    parts = [loaded[name] for name in names]
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def load_huggingface_examples(task: str, spec: dict[str, Any]) -> tuple[list[Example], int]:
    """Examples and the number of unlabelled rows (label -1 / None, e.g. GLUE test) dropped."""
    import datasets

    dataset = _select_splits(task, _load(task, spec), spec.get("split"))
    text_column = spec.get("text_column", ColumnSource.text_column)
    pair_column = spec.get("text_pair_column")
    label_column = spec.get("label_column", ColumnSource.label_column)
    origin = f"Hugging Face dataset {spec['path']!r}"
    require_columns(task, origin, dataset.column_names, [text_column, pair_column, label_column])
    raw_labels = dataset[label_column]
    keep = [i for i, raw in enumerate(raw_labels) if raw is not None and raw != -1]
    texts = dataset[text_column]
    pairs = dataset[pair_column] if pair_column else None
    feature = dataset.features[label_column]
    labels = spec.get("labels")
    if isinstance(feature, datasets.ClassLabel):
        # Class names are the default answers; 'labels' may be keyed by class id or class name.
        if labels is None:
            labels = dict(enumerate(feature.names))
        elif isinstance(labels, dict):
            names = {name: i for i, name in enumerate(feature.names)}
            labels = {names.get(raw_label_key(raw), raw): answer for raw, answer in labels.items()}
    kept_labels = [raw_labels[i] for i in keep]
    mapping = label_mapping(task, labels, kept_labels)
    examples = examples_from_columns(
        task,
        origin,
        [texts[i] for i in keep],
        kept_labels,
        mapping,
        [pairs[i] for i in keep] if pairs is not None else None,
    )
    return examples, len(raw_labels) - len(keep)
