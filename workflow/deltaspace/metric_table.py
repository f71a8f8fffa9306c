"""A metric table: CSV rows `task,metric,reference_metric` naming the primary metric of tasks by name (config key
`metric_table`; config/paper_tasks/metrics.csv is the paper's reference code's table). A task whose config entry
names no `primary_metric` and that the table lists gets the table's metric, passed to prepare_task through the
task's spec (workflow/rules/common.smk), which writes it into task.json.

Standard library only: Snakemake reads the table while it plans the jobs, also where it cannot import the rest
of the package (--use-conda); the metric names are then checked by each prepare_task job instead.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping

COLUMNS = ("task", "metric", "reference_metric")


class MetricTableError(ValueError):
    """A metric table that cannot be used; the message names the file and the row."""


def read_metric_table(path: str | Path, metrics: Mapping[str, str] | None = None) -> dict[str, str]:
    """task -> our metric name, from the table at `path`. metrics: our name -> the reference's name (from
    deltaspace.tasks.metrics.METRICS) to check every row against; None skips that check."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except OSError as err:
        raise MetricTableError(f"metric table {path}: cannot read it ({err.strerror or err})") from None
    if not rows or tuple(cell.strip() for cell in rows[0]) != COLUMNS:
        raise MetricTableError(f"metric table {path}: the first row must be the header {','.join(COLUMNS)}, "
                               f"got {','.join(rows[0]) if rows else 'an empty file'}")
    table: dict[str, str] = {}
    for number, row in enumerate(rows[1:], start=2):
        where = f"metric table {path}, row {number}"
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) != len(COLUMNS) or not all(cell.strip() for cell in row):
            raise MetricTableError(f"{where}: needs {len(COLUMNS)} non-empty cells ({','.join(COLUMNS)}), "
                                   f"got {row!r}")
        task, metric, reference = (cell.strip() for cell in row)
        if task in table:
            raise MetricTableError(f"{where}: task {task!r} is listed twice")
        if metrics is not None:
            if metric not in metrics:
                raise MetricTableError(f"{where}: task {task!r} has unknown metric {metric!r}; "
                                       f"known: {', '.join(sorted(metrics))}")
            if metrics[metric] != reference:
                raise MetricTableError(f"{where}: task {task!r}: metric {metric!r} is the reference's "
                                       f"{metrics[metric]!r}, not {reference!r}")
        table[task] = metric
    return table


def with_table_metric(task: str, entry: Mapping, table: Mapping[str, str]) -> dict:
    """A task's config entry with the table's metric as its primary_metric, unless it names its own."""
    entry = dict(entry)
    if "primary_metric" not in entry and task in table:
        entry["primary_metric"] = table[task]
    return entry
