"""Tidy result tables built from the stages' files; every row names the file it came from."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import pandas as pd

from .intervals import difference_interval, gain_relative
from .io import atomic_path, read_json, write_csv
from .paths import OptimizeRun, OriginalRun, ResultTables, file_in
from .sources import compact_paths

ORIGINAL_COLUMNS = ["task", "det", "method", "seed", "params", "primary_metric", "dev", "test", "init_test", "gain",
                    "test_accuracy", "majority", "init_dev", "best_step", "steps", "seconds", "precision", "device",
                    "source"]


def original_table(metrics_files: list[str | Path], out: str | Path) -> pd.DataFrame:
    """One row per original (stage-1) run: its metrics files (or OriginalRun folders)."""
    rows = []
    for given in metrics_files:
        path = file_in(given, OriginalRun, "metrics")
        m = read_json(path, what="stage-1 metrics")
        # Every evaluation reports accuracy beside the primary metric (`test`).
        rows.append({**{k: m[k] for k in ORIGINAL_COLUMNS if k in m},
                     "test_accuracy": m["test_metrics"]["accuracy"], "source": str(path)})
    table = pd.DataFrame(rows, columns=ORIGINAL_COLUMNS).sort_values(["task", "det", "seed"], ignore_index=True)
    write_csv(out, table, float_format="%.4f")
    return table


# Stage 3's score, its floors and controls: each a column of the relative table and of the predictions file.
BASELINES = ["init", "svd_subspace", "random_subspace", "best_train_point"]
RESULT_KEYS = {"subspace": "test", "init": "init_test", "svd_subspace": "svd_test", "random_subspace": "random_test",
               "best_train_point": "best_train_point_test"}
RELATIVE_COLUMNS = (["task", "task_role", "det", "seed", "own_space", "init", "subspace", *BASELINES[1:], "relative",
                     "gain_relative", "random_relative"]
                    + [f"vs_{b}{end}" for b in BASELINES for end in ("", "_low", "_high")]
                    + ["majority", "lr", "best_step", "source", "predictions"])  # lr empty, best_step 0: start kept
INTERVAL_COLUMNS = ["task_role", "det", "baseline", "scope", "estimate", "low", "high", "n_strata", "n_examples",
                    "sources"]


def percent_of(score: pd.Series, own_space: pd.Series) -> pd.Series:
    """100 * score / own_space; empty (NaN) where own_space is 0, since no ratio to a zero score means anything."""
    return 100 * score / own_space.where(own_space != 0)


def _own_space(original_csv) -> pd.DataFrame:
    table = pd.read_csv(original_csv)
    return table.rename(columns={"test": "own_space"})[["task", "det", "seed", "own_space", "init_test", "majority"]]


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions file (evaluate.predictions_table) with every text as written (none read as a number or NaN)
    and `references` as tuples of texts (a file without that column: each example's gold alone)."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table["example"] = table["example"].astype(int)
    if "references" in table:
        table["references"] = [tuple(json.loads(refs)) for refs in table["references"]]
    else:
        table["references"] = [(gold,) for gold in table["gold"]]
    return table


def _strata(rows: pd.DataFrame, baseline: str, predictions: dict[str, pd.DataFrame]) -> list[tuple]:
    """(subspace, baseline, references) predicted texts of each (task, seed) row: one bootstrap stratum each."""
    return [(predictions[path]["subspace"].tolist(), predictions[path][baseline].tolist(),
             predictions[path]["references"].tolist()) for path in rows["predictions"]]


def _interval(rows: pd.DataFrame, baseline: str, predictions: dict[str, pd.DataFrame]) -> dict:
    # Each task's own primary metric, pooled as the table's means pool the scores; a (task, DET, seed) test set
    # draws the same resamples alone, per task and pooled, so its intervals agree wherever it appears.
    seeds = [zlib.crc32(f"{row.task}/{row.det}/{row.seed}".encode()) for row in rows.itertuples()]
    return difference_interval(_strata(rows, baseline, predictions), list(rows["primary_metric"]), seed=seeds)


def relative_performance_table(results: list[str | Path], original_csv: str | Path, roles: dict[str, str],
                               out: str | Path, summary_out: str | Path,
                               intervals_out: str | Path | None = None) -> pd.DataFrame:
    """Subspace scores beside their floors and controls (init, the joint-SVD subspace, a random subspace, the
    best training task's point), relative to the same DET tuned in its own space, with paired-bootstrap 95%
    intervals of subspace minus each baseline: per row, and (intervals_out) per task and pooled over tasks
    and seeds, per task role and DET. From the optimize result files (or OptimizeRun folders)."""
    rows = []
    for given in results:
        path = file_in(given, OptimizeRun, "result")
        r = read_json(path, what="stage-3 result")
        missing = [key for key in [*RESULT_KEYS.values(), "predictions"] if key not in r]
        if missing:
            raise ValueError(f"stage-3 result {path} lacks {missing}: it was written by an older version; "
                             "delete results/optimize and rerun")
        rows.append({"task": r["task"], "task_role": roles.get(r["task"], "target"), "det": r["det"],
                     "seed": r["seed"], **{column: r[key] for column, key in RESULT_KEYS.items()},
                     "primary_metric": r["primary_metric"], "lr": r["lr"], "best_step": r.get("best_step"),
                     "source": str(path),
                     "predictions": r["predictions"]})
    table = pd.DataFrame(rows).merge(_own_space(original_csv), on=["task", "det", "seed"], how="left")
    if table["own_space"].isna().any():
        missing = table.loc[table["own_space"].isna(), ["task", "det"]].drop_duplicates().values.tolist()
        raise ValueError(f"{original_csv} has no own-space score for {missing}; run stage 1 on those tasks")
    table["relative"] = percent_of(table["subspace"], table["own_space"])
    table["gain_relative"] = gain_relative(table["subspace"], table["init"], table["own_space"])
    table["random_relative"] = percent_of(table["random_subspace"], table["own_space"])
    # Each predictions file read once, for every row, task and pooled interval it enters.
    predictions = {path: read_predictions(path) for path in table["predictions"]}
    for baseline in BASELINES:
        found = [_interval(table.iloc[[i]], baseline, predictions) for i in range(len(table))]
        table[f"vs_{baseline}"] = [f["estimate"] for f in found]
        table[f"vs_{baseline}_low"] = [f["low"] for f in found]
        table[f"vs_{baseline}_high"] = [f["high"] for f in found]
    table = table[RELATIVE_COLUMNS + ["primary_metric"]].sort_values(["task_role", "task", "det", "seed"],
                                                                     ignore_index=True)
    intervals = interval_table(table, predictions)
    write_csv(out, table.drop(columns="primary_metric"), float_format="%.4f")
    if intervals_out is not None:
        write_csv(intervals_out, intervals, float_format="%.4f")
    summary = (table.groupby(["task_role", "det"])[["own_space", "init", "subspace", *BASELINES[1:], "relative",
                                                   "gain_relative"]]
               .mean().round(3).reset_index())
    _write_markdown(summary_out, "Relative performance of subspace optimization (mean over tasks and seeds; "
                                 "relative = subspace / own space x 100; gain_relative = (subspace - init) / "
                                 "(own space - init) x 100)", summary)
    return table


def interval_table(table: pd.DataFrame, predictions: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Paired-bootstrap 95% intervals of subspace minus each baseline, per task (seeds pooled) and pooled over
    every task and seed of a task role, per DET; a stratum is one (task, seed) test set. predictions: each
    row's predictions file, read."""
    rows = []
    for (role, det), group in table.groupby(["task_role", "det"], sort=False):
        scopes = [(task, rows_of_task) for task, rows_of_task in group.groupby("task", sort=False)]
        scopes.append(("pooled", group))
        for baseline in BASELINES:
            for scope, rows_of_scope in scopes:
                found = _interval(rows_of_scope, baseline, predictions)
                rows.append({"task_role": role, "det": det, "baseline": baseline, "scope": scope, **found,
                             "sources": compact_paths(rows_of_scope["predictions"])})
    return pd.DataFrame(rows, columns=INTERVAL_COLUMNS)


def transfer_table(transfer_csvs: list[str | Path], original_csv: str | Path, out: str | Path,
                   summary_out: str | Path) -> pd.DataFrame:
    """Every s -> t decoding with the target DET's own-space score; the summary is the paper's s -> t matrix."""
    table = pd.concat([pd.read_csv(p) for p in transfer_csvs], ignore_index=True)
    own = _own_space(original_csv).rename(columns={"det": "target_det"})
    table = table.merge(own, on=["task", "target_det", "seed"], how="left")
    table["relative"] = percent_of(table["score"], table["own_space"])
    table = table.rename(columns={"init_test": "init"})
    table["gain_relative"] = gain_relative(table["score"], table["init"], table["own_space"])
    columns = ["task", "source_det", "target_det", "seed", "score", "init", "own_space", "relative", "gain_relative",
               "majority", "source"]
    table = table[columns].sort_values(["task", "source_det", "target_det", "seed"], ignore_index=True)
    write_csv(out, table, float_format="%.4f")
    off_diagonal = table[table["source_det"] != table["target_det"]]
    matrix = off_diagonal.pivot_table(index="source_det", columns="target_det", values="relative", aggfunc="mean").round(1)
    _write_markdown(summary_out, "Transfer: relative performance (%) of the target DET decoded from the source "
                                 "DET's intrinsic vector (rows: source, columns: target; mean over tasks and seeds). "
                                 f"Mean over all pairs: {off_diagonal['relative'].mean():.1f}",
                    matrix.reset_index())
    return table


def result_tables(results: list[str | Path], transfers: list[str | Path], original_csv: str | Path,
                  roles: dict[str, str], out) -> ResultTables:
    """The result_tables rule's job: the relative-performance and transfer tables (the ResultTables `out`, or
    into that folder). roles: task -> seen | unseen | target."""
    out = ResultTables.of(out)
    relative_performance_table(results, original_csv, roles, out.relative, out.relative_summary, out.intervals)
    transfer_table(transfers, original_csv, out.transfer, out.transfer_summary)
    return out


def _write_markdown(path, title: str, frame: pd.DataFrame) -> None:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    lines = [f"{title}\n", header, rule] + ["| " + " | ".join(map(str, row)) + " |" for row in frame.values.tolist()]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
