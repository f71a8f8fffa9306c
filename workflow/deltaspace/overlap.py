"""The leakage guard: an unseen task must share no text with the tasks the subspace is learned from.

One row per (unseen task, train task): how many of the unseen task's dev and test texts occur in the train
task's splits and anywhere in its corpus (texts compared by leak key, tasks/leakage.py). Torch-free.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .io import write_csv
from .paths import TaskData
from .tasks.leakage import corpus_keys, read_corpus_keys
from .tasks.split_files import read_split

COLUMNS = ["task", "train_task", "task_texts", "shared_split_texts", "shared_corpus_texts", "task_files",
           "train_task_files"]
EVALUATED_SPLITS = ("dev", "test")  # what an unseen task is scored on
TRAIN_TASK_SPLITS = ("train", "dev", "test")


class LeakageError(ValueError):
    """An unseen task shares more texts with a train task than decompose.max_overlap allows."""


def split_keys(data: TaskData, splits) -> np.ndarray:
    return corpus_keys(example.input for split in splits for example in read_split(data.split(split)))


def joined(paths) -> str:
    return "; ".join(str(path) for path in paths)


def overlap_table(data: dict[str, TaskData], train_tasks: list[str], unseen_tasks: list[str]) -> pd.DataFrame:
    """Per (unseen task, train task): the unseen task's distinct dev/test texts and how many of them the train
    task's splits and whole corpus hold, with the files each count was read from."""
    missing = [task for task in [*unseen_tasks, *train_tasks] if task not in data]
    if missing:
        raise ValueError(f"no task data given for {missing}; give each task's TaskData files")
    data = {task: TaskData.of(files) for task, files in data.items()}
    held = {task: (split_keys(data[task], TRAIN_TASK_SPLITS), read_corpus_keys(data[task].corpus))
            for task in train_tasks}
    rows = []
    for task in unseen_tasks:
        keys = split_keys(data[task], EVALUATED_SPLITS)
        for train_task in train_tasks:
            in_splits, in_corpus = held[train_task]
            files = data[train_task]
            rows.append({
                "task": task, "train_task": train_task, "task_texts": len(keys),
                "shared_split_texts": len(np.intersect1d(keys, in_splits, assume_unique=True)),
                "shared_corpus_texts": len(np.intersect1d(keys, in_corpus, assume_unique=True)),
                "task_files": joined(data[task].split(split) for split in EVALUATED_SPLITS),
                "train_task_files": joined([*(files.split(split) for split in TRAIN_TASK_SPLITS), files.corpus]),
            })
    return pd.DataFrame(rows, columns=COLUMNS)


def check_overlap(table: pd.DataFrame, max_overlap: int) -> None:
    """Raise LeakageError naming every pair whose corpus-level count exceeds max_overlap (the split-level count
    depends on data_seed, so another seed could draw the shared texts into the train task's splits)."""
    offending = table[table["shared_corpus_texts"] > max_overlap]
    if offending.empty:
        return
    pairs = [
        f"unseen task {row.task} shares {row.shared_corpus_texts} of its {row.task_texts} dev/test texts with the "
        f"corpus of train task {row.train_task} ({row.shared_split_texts} with its train/dev/test splits at this "
        f"data_seed): move {row.task} out of decompose.unseen_tasks or {row.train_task} out of "
        f"decompose.train_tasks, or raise decompose.max_overlap (now {max_overlap})"
        for row in offending.itertuples()
    ]
    raise LeakageError(f"cross-task leakage in {len(pairs)} pair(s) of tasks; texts compared after case, "
                       "whitespace and punctuation are dropped:\n- " + "\n- ".join(pairs))


def refused_path(out: Path) -> Path:
    """Where a refused table stays for the user: Snakemake deletes the outputs of a failed job."""
    return Path(out).with_name(f"{Path(out).stem}.refused.csv")


def overlap(data: dict[str, TaskData], train_tasks: list[str], unseen_tasks: list[str], max_overlap: int,
            out: Path, log: Callable[[str], None] = print) -> pd.DataFrame:
    """The overlap job: the table to `out`; if a pair shares too much, also beside it (refused_path) and raise."""
    table = overlap_table(data, train_tasks, unseen_tasks)
    for row in table.itertuples():
        log(f"[overlap] {row.task} vs {row.train_task}: {row.shared_corpus_texts} of {row.task_texts} dev/test "
            f"texts in its corpus, {row.shared_split_texts} in its splits")
    write_csv(out, table)
    try:
        check_overlap(table, max_overlap)
    except LeakageError as err:
        write_csv(refused_path(out), table)
        raise LeakageError(f"{err}\nEvery pair's counts: {refused_path(out)}") from None
    refused_path(out).unlink(missing_ok=True)  # a refusal of an earlier task list no longer holds
    return table
