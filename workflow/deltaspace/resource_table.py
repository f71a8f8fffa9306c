"""The resource table (CSV + markdown): wall time and peak memory per stage, summed from the TSV files that
Snakemake's `benchmark:` directive writes for every heavy job."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .io import atomic_path
from .paths import ResourceTable
from .sources import compact_paths, read_table

# Which stage of the method a rule's jobs belong to; a rule not listed is its own stage.
STAGE_OF_RULE = {"original": "stage 1", "decompose": "stage 2", "optimize": "stage 3",
                 "transfer": "transfer", "landscape": "landscape"}
COLUMNS = ["stage", "rule", "jobs", "wall_s", "cpu_s", "peak_rss_mb", "source"]


def read_benchmark(rule: str, path: str | Path) -> dict:
    """One job's record; a file of several repeats (benchmark: repeat(...)) counts as its mean run."""
    table = read_table(path, ["s", "max_rss", "cpu_time"], f"benchmark of rule {rule}")
    if table.empty:
        raise ValueError(f"benchmark of rule {rule} {path} has no rows; rerun that job")
    numbers = table[["s", "max_rss", "cpu_time"]].apply(pd.to_numeric, errors="coerce")  # Snakemake writes NA
    return {"rule": rule, "file": str(path), "wall_s": numbers["s"].mean(), "cpu_s": numbers["cpu_time"].mean(),
            "max_rss_mb": numbers["max_rss"].max()}


def resource_table(benchmarks: list[tuple[str, str | Path]], out) -> pd.DataFrame:
    """Per rule: jobs, summed wall and CPU seconds, the largest peak resident memory (MB) of any one job, and
    the benchmark files behind the row, in the order given; written as the ResourceTable files `out` (or into
    that folder)."""
    out = ResourceTable.of(out)
    if not benchmarks:
        raise ValueError("no benchmark files given; give RULE=PATH pairs of the benchmark TSVs")
    jobs = pd.DataFrame([read_benchmark(rule, path) for rule, path in benchmarks])
    grouped = jobs.groupby("rule", sort=False)
    table = pd.DataFrame({
        "jobs": grouped.size(), "wall_s": grouped["wall_s"].sum(), "cpu_s": grouped["cpu_s"].sum(),
        "peak_rss_mb": grouped["max_rss_mb"].max(), "source": grouped["file"].agg(compact_paths),
    }).reset_index()
    table["stage"] = table["rule"].map(lambda rule: STAGE_OF_RULE.get(rule, rule))
    table = table[COLUMNS]
    with atomic_path(out.table) as tmp:
        table.to_csv(tmp, index=False, float_format="%.2f")
    total = pd.DataFrame([{"stage": "total", "rule": "", "jobs": table["jobs"].sum(), "wall_s": table["wall_s"].sum(),
                           "cpu_s": table["cpu_s"].sum(), "peak_rss_mb": table["peak_rss_mb"].max(),
                           "source": str(out.table)}])
    text = ("Compute per stage, from Snakemake's benchmark records: wall and CPU seconds summed over the jobs "
            "(jobs that ran in parallel overlap, so the sum exceeds the elapsed time), and the peak resident "
            "memory of the largest job.\n\n" + pd.concat([table, total]).to_markdown(index=False, floatfmt=".1f"))
    with atomic_path(out.summary) as tmp:
        tmp.write_text(text + "\n")
    return table
