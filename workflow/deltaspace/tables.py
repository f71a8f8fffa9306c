"""Tidy result tables built from the stages' files; every row names the file it came from."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .io import atomic_path, read_json
from .files import METRICS_FILE

STAGE1_COLUMNS = ["task", "det", "method", "seed", "params", "primary_metric", "dev", "test", "test_macro_f1",
                  "majority", "init_dev", "best_step", "steps", "seconds", "precision", "device", "source"]


def stage1_table(run_dirs: list[str | Path], out: str | Path) -> pd.DataFrame:
    rows = []
    for run_dir in run_dirs:
        path = Path(run_dir) / METRICS_FILE
        m = read_json(path, what="stage-1 metrics")
        rows.append({**{k: m[k] for k in STAGE1_COLUMNS if k in m},
                     "test_macro_f1": m["test_metrics"]["macro_f1"], "source": str(path)})
    table = pd.DataFrame(rows, columns=STAGE1_COLUMNS).sort_values(["task", "det", "seed"], ignore_index=True)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    return table
