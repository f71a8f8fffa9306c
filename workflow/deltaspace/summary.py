"""results/summary.md: the headline tables in one page; every row names the files its numbers come from."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .intervals import significance_words
from .io import atomic_path, read_json
from .sources import compact_paths, read_table
from .subspace_health import ERROR_TOLERANCE, MAX_SATURATED_SHARE


def _score(values: pd.Series) -> str:
    """Mean, with the spread over seeds when there are several."""
    if len(values) > 1:
        return f"{values.mean():.3f} ± {values.std():.3f}"
    return f"{values.mean():.3f}"


def _markdown(frame: pd.DataFrame, digits: int = 1) -> str:
    """Numbers as given or with `digits` decimals: tabulate would otherwise reformat numeric text too."""
    frame = frame.copy()
    for column in frame.columns[frame.dtypes == float]:
        frame[column] = frame[column].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}f}")
    if "source" in frame:
        frame["source"] = frame["source"].map(lambda s: f"`{s}`" if s else s)
    return frame.to_markdown(index=False, disable_numparse=True)


def original_section(original_csv: str | Path) -> tuple[str, pd.DataFrame]:
    table = read_table(original_csv, ["task", "det", "seed", "test", "init_test", "gain", "majority", "source"],
                       "stage-1 table")
    dets = list(pd.unique(table["det"]))
    rows = []
    for task, group in table.groupby("task", sort=False):
        row = {"task": task, "majority": f"{group['majority'].iloc[0]:.3f}"}
        for det in dets:
            runs = group[group["det"] == det]
            row[det] = f"{_score(runs['test'])} (init {runs['init_test'].mean():.3f})" if len(runs) else ""
        rows.append({**row, "source": compact_paths(group["source"])})
    # The per-DET mean: first over seeds within a task, so every task weighs the same.
    per_task = table.groupby(["det", "task"], sort=False)[["test", "gain"]].mean()
    gained = table.groupby(["det", "task"], sort=False)["gain"].mean().gt(0).groupby("det").sum()
    rows.append({"task": "mean over tasks", "majority": f"{table.groupby('task')['majority'].first().mean():.3f}",
                 **{det: f"{per_task.loc[det, 'test'].mean():.3f}" for det in dets}, "source": str(original_csv)})
    rows.append({"task": "mean gain over init (tasks gained)", "majority": "",
                 **{det: f"{per_task.loc[det, 'gain'].mean():+.3f} ({gained[det]}/{len(per_task.loc[det])})"
                    for det in dets}, "source": str(original_csv)})
    frame = pd.DataFrame(rows, columns=["task", "majority", *dets, "source"])
    seeds = table["seed"].nunique()
    text = ("## Original space: each DET tuned alone (stage 1)\n\n"
            f"Test score (each task's primary metric) at the best dev checkpoint, per task and DET"
            f"{'; mean ± standard deviation over ' + str(seeds) + ' seeds' if seeds > 1 else ''}, with the test "
            "score at theta_init (before training) in brackets. `majority`: always answering the most common "
            "training label.\n\n" + _markdown(frame))
    return text, frame


def decompose_section(metrics_json: str | Path) -> tuple[str, pd.DataFrame]:
    """Stage 2's start beside the subspace it saved, per DET, and in words every way the saved one is worse."""
    metrics = read_json(metrics_json, what="stage-2 metrics")
    if "start" not in metrics:
        raise ValueError(f"stage-2 metrics {metrics_json} lack the start's diagnostics (written before they "
                         "existed); rerun decompose")
    start, saved = metrics["start"], metrics["saved"]
    names = {"relative_error": "relative error", "saturated": "saturated", "point_norm": "point norm"}
    rows = [{"det": det, **{f"{name} {when}": values[key] for key, name in names.items()
                            for when, values in (("start", first), ("saved", saved["dets"][det]))},
             "source": str(metrics_json)} for det, first in start["dets"].items()]
    frame = pd.DataFrame(rows)
    step = metrics["best_step"]
    kept = ("**Stage 2 did not improve on its start**: no later checkpoint beat it on dev, so the saved subspace is "
            "the start itself (and the learned and joint-SVD rows below train in the same subspace)."
            if step == 0 else f"The saved subspace is step {step} of {metrics['steps']}.")
    warnings = metrics.get("warnings") or []
    said = ("\n\n" + "\n".join(f"- **Warning:** {w}." for w in warnings)) if warnings else (
        f"\n\nNo warning: the saved subspace reconstructs the training deltas within {ERROR_TOLERANCE} of its start, "
        f"at most {MAX_SATURATED_SHARE:.0%} of its down-projection units are saturated, and its mixed dev score is "
        "at least the start's.")
    text = ("## Subspace learning (stage 2): the start beside the saved subspace\n\n"
            f"Mixed dev score (every DET decoded at the same random mixing points of each training task): start "
            f"{start['dev_mixed']:.4f}, saved {saved['dev_mixed']:.4f}. {kept} Relative reconstruction error: "
            "||delta - Up(Down(delta))|| / ||delta|| over the training deltas (1 is no better than reconstructing "
            "nothing); saturated: share of down-projection units with |tanh| > 0.99." + said + "\n\n"
            + _markdown(frame, digits=3))
    return text, frame


RELATIVE_SCORES = ["own_space", "init", "subspace", "svd_subspace", "random_subspace", "best_train_point"]
BASELINE_NAMES = {"init": "theta_init", "svd_subspace": "the joint-SVD subspace", "random_subspace":
                  "a random subspace", "best_train_point": "the best training task's point"}


def relative_section(relative_csv: str | Path, original_csv: str | Path) -> tuple[str, pd.DataFrame]:
    table = read_table(relative_csv, ["task", "task_role", "det", "seed", *RELATIVE_SCORES, "relative",
                                      "gain_relative", "source"], "relative-performance table")
    stage1 = read_table(original_csv, ["task", "det", "seed", "source"], "stage-1 table")
    table = table.merge(stage1[["task", "det", "seed", "source"]].rename(columns={"source": "stage1_source"}),
                        on=["task", "det", "seed"], how="left")
    rows = []
    for (role, det), group in table.groupby(["task_role", "det"], sort=False):
        # Mean over tasks per seed first, so the seed spread is that of the headline number itself.
        per_seed = group.groupby("seed")[RELATIVE_SCORES + ["relative", "gain_relative"]].mean()
        sources = compact_paths(group["source"])
        if group["stage1_source"].notna().all():
            sources += "; " + compact_paths(group["stage1_source"])
        rows.append({"task_role": role, "det": det, "tasks": group["task"].nunique(), "seeds": len(per_seed),
                     **{score: _score(per_seed[score]) for score in RELATIVE_SCORES},
                     "relative (%)": _percent(per_seed["relative"]),
                     "gain relative (%)": _percent(per_seed["gain_relative"]), "source": sources})
    frame = pd.DataFrame(rows)
    text = ("## Subspace: relative performance of subspace optimization (stage 3)\n\n"
            "Test score of an intrinsic vector trained in the learned subspace, beside its floors and controls: "
            "`init` (theta_init, no training), `svd_subspace` (the same training in the joint-SVD subspace that "
            "stage 2 starts from: what the joint decomposition adds), `random_subspace` (an untrained random "
            "subspace of the same shape and scale), `best_train_point` (no training: the training tasks' stage-2 "
            "point that scores best on this task's dev split) and `own_space` (the DET tuned alone, stage 1). "
            "relative = subspace / own space x 100 (the paper's ratio); gain relative = (subspace - init) / (own "
            "space - init) x 100, the share of the tuning gain the subspace recovers. Averaged over tasks (± "
            "standard deviation over seeds). Sources: the stage-3 results, then the stage-1 metrics.\n\n"
            + _markdown(frame))
    return text, frame


def intervals_section(intervals_csv: str | Path) -> tuple[str, pd.DataFrame]:
    table = read_table(intervals_csv, ["task_role", "det", "baseline", "scope", "estimate", "low", "high",
                                       "n_strata", "n_examples", "sources"], "interval table")
    lines = []
    for (role, det), group in table[table["scope"] == "pooled"].groupby(["task_role", "det"], sort=False):
        said = [f"{_signed(r.estimate)} vs {BASELINE_NAMES.get(r.baseline, r.baseline)} [{_signed(r.low)}, "
                f"{_signed(r.high)}]: {_verdict(r.low, r.high, r.baseline)}" for r in group.itertuples()]
        lines.append(f"- **{det}**, {role} tasks ({int(group['n_strata'].iloc[0])} task-seed test sets, "
                     f"{int(group['n_examples'].iloc[0])} examples): " + "; ".join(said) + ".")
    frame = table.assign(interval=[f"{_signed(e)} [{_signed(lo)}, {_signed(hi)}]"
                                   for e, lo, hi in zip(table["estimate"], table["low"], table["high"])])
    frame = frame[["task_role", "det", "baseline", "scope", "interval", "n_strata", "n_examples", "sources"]]
    text = ("## Is the learned subspace better than its controls? (paired bootstrap, 95%)\n\n"
            "Subspace test score minus each baseline's, on the same test examples; each (task, seed) test set is "
            "resampled on its own and the pooled difference is the mean over them. A difference is significant "
            "when its 95% interval excludes 0.\n\n" + "\n".join(lines) + "\n\nEvery interval, per task "
            "(seeds pooled) and pooled over tasks:\n\n" + _markdown(frame.rename(columns={"sources": "source"})))
    return text, frame


def _signed(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:+.3f}"


def _verdict(low: float, high: float, baseline: str) -> str:
    if pd.isna(low) or pd.isna(high):
        return "no interval"
    return significance_words(low, high, a="subspace", b=BASELINE_NAMES.get(baseline, baseline))


def _percent(values: pd.Series) -> str:
    if len(values) > 1:
        return f"{values.mean():.1f} ± {values.std():.1f}"
    return f"{values.mean():.1f}"


def transfer_section(transfer_csv: str | Path, transfer_runs: list[str | Path]) -> tuple[str, pd.DataFrame]:
    table = read_table(transfer_csv, ["task", "seed", "source_det", "target_det", "relative"], "transfer table")
    # Which per-task file holds each (task, seed): the rows name the files that computed their scores.
    run_of = {}
    for path in transfer_runs:
        run = read_table(path, ["task", "seed"], "transfer result")
        run_of.update({(task, int(seed)): str(path) for task, seed in run[["task", "seed"]].drop_duplicates().values})
    unknown = sorted({(t, int(s)) for t, s in table[["task", "seed"]].values} - set(run_of))
    if unknown:
        raise ValueError(f"{transfer_csv} has rows of (task, seed) {unknown} that no given transfer result holds; "
                         "rerun the subspace_tables rule")
    dets = list(pd.unique(pd.concat([table["source_det"], table["target_det"]])))
    matrix = table.pivot_table(index="source_det", columns="target_det", values="relative", aggfunc="mean")
    matrix = matrix.reindex(index=dets, columns=dets).round(1)
    frame = matrix.rename_axis(columns=None).reset_index().rename(columns={"source_det": "source \\ target"})
    frame["source"] = [compact_paths(run_of[(t, int(s))] for t, s in table.loc[table["source_det"] == det,
                                                                              ["task", "seed"]].values)
                       for det in dets]
    off = table[table["source_det"] != table["target_det"]]
    mean = f" Mean over the off-diagonal pairs: {off['relative'].mean():.1f}%." if not off.empty else ""
    text = ("## Transfer: one DET's intrinsic vector decoded through another\n\n"
            "Relative performance (%) of the target DET (columns) at the intrinsic vector found through the "
            "source DET (rows), over the target's own-space score; the diagonal is subspace optimization "
            f"itself. Mean over {table['task'].nunique()} task(s) and {table['seed'].nunique()} seed(s).{mean}"
            "\n\n" + _markdown(frame))
    return text, frame


def landscape_section(landscape_csv: str | Path) -> tuple[str, pd.DataFrame]:
    table = read_table(landscape_csv, [], "landscape area table")
    if "source" not in table:
        table["source"] = str(landscape_csv)
    text = ("## Landscape: where every DET does well\n\n"
            "Area of the region of the DETs' plane in the subspace where every DET reaches the configured "
            "fraction of its own-space score.\n\n" + _markdown(table, digits=3))
    return text, table


def resources_section(resources_csv: str | Path) -> tuple[str, pd.DataFrame]:
    table = read_table(resources_csv, ["stage", "rule", "jobs", "wall_s", "peak_rss_mb", "source"], "resource table")
    text = ("## Compute: wall time and peak memory per stage\n\n"
            "Summed over each stage's jobs from Snakemake's benchmark records (parallel jobs overlap); peak "
            f"memory is that of the largest job. Total wall time of the benchmarked jobs: "
            f"{table['wall_s'].sum():.0f} s.\n\n" + _markdown(table))
    return text, table


def write_summary(out: str | Path, original_csv, relative_csv, intervals_csv, transfer_csv, transfer_runs,
                  resources_csv=None, landscape_csv=None, decompose_metrics=None) -> str:
    """The summary page; the stage-2, landscape and resource sections only where their files are given."""
    sections = [original_section(original_csv)[0]]
    if decompose_metrics is not None:
        sections.append(decompose_section(decompose_metrics)[0])
    sections += [relative_section(relative_csv, original_csv)[0],
                intervals_section(intervals_csv)[0], transfer_section(transfer_csv, transfer_runs)[0]]
    if landscape_csv is not None:
        sections.append(landscape_section(landscape_csv)[0])
    if resources_csv is not None:
        sections.append(resources_section(resources_csv)[0])
    text = ("# deltaspace: summary of the results\n\n"
            "Generated from the tables under `results/tables`; the `source` column of every row names the files "
            "behind its numbers (`{a,b}` stands for each of a and b).\n\n" + "\n\n".join(sections) + "\n")
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    return text
