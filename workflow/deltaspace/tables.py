"""Tidy result tables built from the stages' files; every row names the file it came from."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .io import atomic_path, read_json
from .paths import OptimizeRun, OriginalRun, ResultTables, file_in

ORIGINAL_COLUMNS = ["task", "det", "method", "seed", "params", "primary_metric", "dev", "test", "test_macro_f1",
                  "majority", "init_dev", "best_step", "steps", "seconds", "precision", "device", "source"]


def original_table(metrics_files: list[str | Path], out: str | Path) -> pd.DataFrame:
    """One row per original (stage-1) run: its metrics files (or OriginalRun folders)."""
    rows = []
    for given in metrics_files:
        path = file_in(given, OriginalRun, "metrics")
        m = read_json(path, what="stage-1 metrics")
        rows.append({**{k: m[k] for k in ORIGINAL_COLUMNS if k in m},
                     "test_macro_f1": m["test_metrics"]["macro_f1"], "source": str(path)})
    table = pd.DataFrame(rows, columns=ORIGINAL_COLUMNS).sort_values(["task", "det", "seed"], ignore_index=True)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    return table


RELATIVE_COLUMNS = ["task", "task_role", "det", "seed", "own_space", "subspace", "random_subspace", "relative",
                    "random_relative", "majority", "lr", "source"]


def percent_of(score: pd.Series, own_space: pd.Series) -> pd.Series:
    """100 * score / own_space; empty (NaN) where own_space is 0, since no ratio to a zero score means anything."""
    return 100 * score / own_space.where(own_space != 0)


def _own_space(original_csv) -> pd.DataFrame:
    table = pd.read_csv(original_csv)
    return table.rename(columns={"test": "own_space"})[["task", "det", "seed", "own_space", "majority"]]


def relative_performance_table(results: list[str | Path], original_csv: str | Path, roles: dict[str, str],
                               out: str | Path, summary_out: str | Path) -> pd.DataFrame:
    """Subspace and random-subspace scores relative to the same DET tuned in its own space (x 100), from the
    optimize result files (or OptimizeRun folders)."""
    rows = []
    for given in results:
        path = file_in(given, OptimizeRun, "result")
        r = read_json(path, what="stage-3 result")
        rows.append({"task": r["task"], "task_role": roles.get(r["task"], "target"), "det": r["det"],
                     "seed": r["seed"], "subspace": r["test"], "random_subspace": r["random_test"], "lr": r["lr"],
                     "source": str(path)})
    table = pd.DataFrame(rows).merge(_own_space(original_csv), on=["task", "det", "seed"], how="left")
    if table["own_space"].isna().any():
        missing = table.loc[table["own_space"].isna(), ["task", "det"]].drop_duplicates().values.tolist()
        raise ValueError(f"{original_csv} has no own-space score for {missing}; run stage 1 on those tasks")
    table["relative"] = percent_of(table["subspace"], table["own_space"])
    table["random_relative"] = percent_of(table["random_subspace"], table["own_space"])
    table = table[RELATIVE_COLUMNS].sort_values(["task_role", "task", "det", "seed"], ignore_index=True)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    summary = (table.groupby(["task_role", "det"])[["own_space", "subspace", "random_subspace", "relative", "random_relative"]]
               .mean().round(2).reset_index())
    _write_markdown(summary_out, "Relative performance of subspace optimization (mean over tasks and seeds; "
                                 "relative = subspace / own space x 100)", summary)
    return table


def transfer_table(transfer_csvs: list[str | Path], original_csv: str | Path, out: str | Path,
                   summary_out: str | Path) -> pd.DataFrame:
    """Every s -> t decoding with the target DET's own-space score; the summary is the paper's s -> t matrix."""
    table = pd.concat([pd.read_csv(p) for p in transfer_csvs], ignore_index=True)
    own = _own_space(original_csv).rename(columns={"det": "target_det"})
    table = table.merge(own, on=["task", "target_det", "seed"], how="left")
    table["relative"] = percent_of(table["score"], table["own_space"])
    columns = ["task", "source_det", "target_det", "seed", "score", "own_space", "relative", "majority", "source"]
    table = table[columns].sort_values(["task", "source_det", "target_det", "seed"], ignore_index=True)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
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
    relative_performance_table(results, original_csv, roles, out.relative, out.relative_summary)
    transfer_table(transfers, original_csv, out.transfer, out.transfer_summary)
    return out


def _write_markdown(path, title: str, frame: pd.DataFrame) -> None:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    lines = [f"{title}\n", header, rule] + ["| " + " | ".join(map(str, row)) + " |" for row in frame.values.tolist()]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
