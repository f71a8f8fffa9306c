"""Tasks: real data sources, deterministic train/dev/test preparation, and metrics."""

from .crossfit import missing_crossfit_files, resolve_crossfit_path
from .errors import TaskDataError
from .example import Example
from .metrics import (METRICS, CorpusMetric, MeanMetric, Metric, Scores, improves, majority_baseline,
                      majority_label, reported_metrics, score_texts)
from .package_data import DEFAULT_WHEELS_DIR, DOWNLOAD_COMMAND
from .packaged import PACKAGED_TASKS, PackagedTask, load_packaged, packaged_task_names
from .prepare import prepare_task, prepare_task_job
from .raw_task import SPLIT_NAMES, RawTask
from .sources import load_task, validate_spec
from .split import dedupe, normalize_text, stratified_split
from .split_files import read_split

__all__ = [
    "DEFAULT_WHEELS_DIR",
    "DOWNLOAD_COMMAND",
    "METRICS",
    "PACKAGED_TASKS",
    "SPLIT_NAMES",
    "CorpusMetric",
    "Example",
    "MeanMetric",
    "Metric",
    "PackagedTask",
    "RawTask",
    "Scores",
    "TaskDataError",
    "dedupe",
    "improves",
    "load_packaged",
    "load_task",
    "majority_baseline",
    "majority_label",
    "missing_crossfit_files",
    "normalize_text",
    "packaged_task_names",
    "prepare_task",
    "prepare_task_job",
    "read_split",
    "reported_metrics",
    "resolve_crossfit_path",
    "score_texts",
    "stratified_split",
    "validate_spec",
]
