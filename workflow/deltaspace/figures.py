"""The report's figures, each as PNG and PDF: the transfer matrix, relative performance with its seed spread and
the intervals of its differences, and the training curves of stages 1, 2 and 3. Data preparation (tidy frames)
is kept apart from drawing, so what a figure shows can be checked without looking at it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend
from matplotlib.ticker import MaxNLocator

from .io import atomic_path, read_json
from .paths import FIGURE_FORMATS, Figures, OptimizeRun, OriginalRun, file_in
from .sources import read_table

SCORES = ["own_space", "init", "subspace", "svd_subspace", "random_subspace", "best_train_point"]
STAGE3_STYLES = {"learned": {"linestyle": "-"}, "svd": {"linestyle": ":"}, "random": {"linestyle": "--"}}
SCORE_LABELS = {"own_space": "own space (stage 1)", "init": "theta_init", "subspace": "learned subspace",
                "svd_subspace": "joint-SVD subspace", "random_subspace": "random subspace",
                "best_train_point": "best training point"}


def save_figure(fig: Figure, png: str | Path) -> list[Path]:
    """The PNG and its PDF twin (same stem), each written atomically; no timestamps, so reruns give the same bytes."""
    paths = []
    for fmt in FIGURE_FORMATS:
        path = Path(png).with_suffix(f".{fmt}")
        metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    return paths


# ---- transfer -----------------------------------------------------------------------------------------


def transfer_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """Mean relative performance (%) per source (rows) and target DET (columns), over tasks and seeds."""
    dets = list(pd.unique(pd.concat([table["source_det"], table["target_det"]])))
    matrix = table.pivot_table(index="source_det", columns="target_det", values="relative", aggfunc="mean")
    return matrix.reindex(index=dets, columns=dets)


def plot_transfer_matrix(transfer_csv: str | Path, png: str | Path) -> list[Path]:
    table = read_table(transfer_csv, ["task", "seed", "source_det", "target_det", "relative"], "transfer table")
    matrix = transfer_matrix(table)
    n = len(matrix)
    fig = Figure(figsize=(1.3 * n + 2.5, 1.1 * n + 1.5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=max(100.0, np.nanmax(matrix.to_numpy())))
    for (i, j), value in np.ndenumerate(matrix.to_numpy(dtype=float)):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.0f}", ha="center", va="center", color="white" if value < 60 else "black")
    ax.set_xticks(range(n), matrix.columns, rotation=30, ha="right")
    ax.set_yticks(range(n), matrix.index)
    ax.set_xlabel("target DET (decodes the vector)")
    ax.set_ylabel("source DET (found the vector)")
    tasks, seeds = table["task"].nunique(), table["seed"].nunique()
    ax.set_title(f"Transfer: % of the target's own-space score\n(mean over {tasks} task(s), {seeds} seed(s))")
    fig.colorbar(image, ax=ax, label="relative performance (%)")
    return save_figure(fig, png)


# ---- relative performance -----------------------------------------------------------------------------


def relative_by_seed(table: pd.DataFrame) -> pd.DataFrame:
    """Per task role, DET and seed: the scores and the relative performance, averaged over tasks."""
    return (table.groupby(["task_role", "det", "seed"], sort=False)[SCORES + ["relative"]].mean().reset_index())


def relative_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per task role and DET: the mean over seeds of each score, and its spread (min and max over seeds)."""
    per_seed = relative_by_seed(table)
    grouped = per_seed.groupby(["task_role", "det"], sort=False)[SCORES + ["relative"]]
    mean, low, high = grouped.mean(), grouped.min(), grouped.max()
    summary = mean.join(low.add_suffix("_min")).join(high.add_suffix("_max"))
    return summary.join(grouped.size().rename("seeds")).reset_index()


def plot_relative_performance(relative_csv: str | Path, intervals_csv: str | Path, png: str | Path) -> list[Path]:
    """Top: each score per DET (bars: mean over seeds, whiskers: min-max over seeds, dots: seeds). Bottom: the
    pooled paired-bootstrap 95% interval of subspace minus each baseline."""
    table = read_table(relative_csv, ["task", "task_role", "det", "seed", *SCORES, "relative"],
                       "relative-performance table")
    intervals = read_table(intervals_csv, ["task_role", "det", "baseline", "scope", "estimate", "low", "high"],
                           "interval table")
    pooled = intervals[intervals["scope"] == "pooled"]
    summary, per_seed = relative_summary(table), relative_by_seed(table)
    roles = list(pd.unique(summary["task_role"]))
    dets = list(pd.unique(summary["det"]))
    fig = Figure(figsize=(max(6.0, 2.2 * len(dets) + 1.5) * len(roles), 7.6), layout="constrained")
    grid = fig.subplots(2, len(roles), squeeze=False, height_ratios=[3, 2])
    width = 0.8 / len(SCORES)
    for column, role in enumerate(roles):
        ax, diff_ax = grid[0, column], grid[1, column]
        rows = summary[summary["task_role"] == role].set_index("det").reindex(dets)
        seeds = per_seed[per_seed["task_role"] == role]
        for k, score in enumerate(SCORES):
            x = np.arange(len(dets)) + (k - (len(SCORES) - 1) / 2) * width
            mean = rows[score].to_numpy(dtype=float)
            spread = np.vstack([mean - rows[f"{score}_min"].to_numpy(dtype=float),
                                rows[f"{score}_max"].to_numpy(dtype=float) - mean])
            ax.bar(x, mean, width, yerr=spread, capsize=2, label=SCORE_LABELS[score], color=f"C{k}")
            for i, det in enumerate(dets):  # every seed as a dot: the spread the bar's whisker summarises
                values = seeds.loc[seeds["det"] == det, score].to_numpy(dtype=float)
                ax.scatter(np.full(len(values), x[i]), values, s=8, color="black", zorder=3)
        for i, det in enumerate(dets):
            ax.annotate(f"{rows.loc[det, 'relative']:.0f}%", (i, np.nanmax(rows.loc[det, [f'{s}_max' for s in SCORES]])),
                        textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        ax.set_xticks(range(len(dets)), dets)
        n_tasks = table.loc[table["task_role"] == role, "task"].nunique()
        ax.set_title(f"{role} tasks ({n_tasks}); label: subspace / own space")
        ax.set_ylim(0, 1.15 * max(1e-9, np.nanmax(summary[[f"{s}_max" for s in SCORES]].to_numpy(dtype=float))))
        ax.set_ylabel("test score (primary metric), mean over tasks")
        _plot_differences(diff_ax, pooled[pooled["task_role"] == role], dets)
    grid[0, 0].legend(loc="lower left", fontsize=7, ncols=2)
    fig.suptitle("Subspace optimization vs. its floors and controls (bars: mean over seeds; whiskers: min-max)")
    return save_figure(fig, png)


def _plot_differences(ax, pooled: pd.DataFrame, dets: list[str]) -> None:
    """Subspace minus each baseline per DET, with its pooled 95% interval; the zero line is 'no difference'."""
    baselines = list(pd.unique(pooled["baseline"]))
    width = 0.8 / max(1, len(baselines))
    for k, baseline in enumerate(baselines):
        rows = pooled[pooled["baseline"] == baseline].set_index("det").reindex(dets)
        x = np.arange(len(dets)) + (k - (len(baselines) - 1) / 2) * width
        estimate = rows["estimate"].to_numpy(dtype=float)
        error = np.vstack([estimate - rows["low"].to_numpy(dtype=float), rows["high"].to_numpy(dtype=float) - estimate])
        ax.errorbar(x, estimate, yerr=error, fmt="o", capsize=3, color=f"C{SCORES.index(baseline)}",
                    label=f"minus {SCORE_LABELS[baseline]}")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(dets)), dets)
    ax.set_ylabel("subspace minus baseline\n(pooled, 95% CI)")
    ax.legend(fontsize=7, ncols=2)


# ---- training curves ----------------------------------------------------------------------------------


def original_curves(metrics_files: list[str | Path]) -> pd.DataFrame:
    """One row per original (stage-1) run and evaluation (step 0: the init): task, det, seed, step, train_loss, dev."""
    rows = []
    for given in metrics_files:
        path = file_in(given, OriginalRun, "metrics")
        m = read_json(path, what="stage-1 metrics")
        key = f"dev_{m['primary_metric']}"
        if "init_dev" in m:  # the dev score at the DET's init: where training started
            rows.append({"task": m["task"], "det": m["det"], "seed": m["seed"], "step": 0, "train_loss": np.nan,
                         "dev": m["init_dev"]})
        for entry in m.get("history") or []:
            if key not in entry:
                raise ValueError(f"stage-1 metrics {path}: a history entry lacks {key!r}; rerun that original job")
            rows.append({"task": m["task"], "det": m["det"], "seed": m["seed"], "step": entry["step"],
                         "train_loss": entry["train_loss"], "dev": entry[key]})
    return pd.DataFrame(rows, columns=["task", "det", "seed", "step", "train_loss", "dev"])


def decompose_curves(metrics_json: str | Path) -> pd.DataFrame:
    """Stage 2's evaluations from step 0 (the start): step, reconstruction, task_loss, dev_mixed (losses are
    the means since the previous evaluation, so step 0 has none)."""
    history = read_json(metrics_json, what="stage-2 metrics").get("history") or []
    return pd.DataFrame(history, columns=["step", "reconstruction", "task_loss", "dev_mixed"])


def decompose_health(metrics_json: str | Path) -> pd.DataFrame:
    """Stage 2's diagnostics per evaluation and DET (subspace_health): step, det, relative_error, saturated,
    point_norm."""
    history = read_json(metrics_json, what="stage-2 metrics").get("history") or []
    rows = [{"step": entry["step"], "det": det, **values} for entry in history
            for det, values in (entry.get("dets") or {}).items()]
    return pd.DataFrame(rows, columns=["step", "det", "relative_error", "saturated", "point_norm"])


def optimize_curves(results: list[str | Path]) -> pd.DataFrame:
    """One row per optimize (stage-3) evaluation, in the learned and in the random subspace, for every lr."""
    rows = []
    for given in results:
        r = read_json(file_in(given, OptimizeRun, "result"), what="stage-3 result")
        for space, key in (("learned", "history"), ("svd", "svd_history"), ("random", "random_history")):
            for entry in r.get(key) or []:
                rows.append({"task": r["task"], "det": r["det"], "seed": r["seed"], "subspace": space,
                             "lr": entry["lr"], "step": entry["step"], "train_loss": entry["train_loss"],
                             "dev": entry["dev"]})
    return pd.DataFrame(rows, columns=["task", "det", "seed", "subspace", "lr", "step", "train_loss", "dev"])


def _curve_grid(curves: pd.DataFrame, title: str, line_groups: list[str], styles=None, style_legend=()) -> Figure:
    """Columns: DETs; rows: train loss and dev metric; one colour per task, one line per `line_groups`."""
    dets = list(pd.unique(curves["det"]))
    tasks = list(pd.unique(curves["task"]))
    colours = {task: f"C{i % 10}" for i, task in enumerate(tasks)}
    fig = Figure(figsize=(3.2 * len(dets) + 1, 5.6), layout="constrained")
    axes = fig.subplots(2, len(dets), sharex=True, sharey="row", squeeze=False)  # DETs compare at a glance
    for col, det in enumerate(dets):
        for keys, group in curves[curves["det"] == det].groupby(["task", *line_groups], sort=False):
            task = keys[0]
            style = styles(dict(zip(line_groups, keys[1:]))) if styles else {}
            for row, metric in enumerate(["train_loss", "dev"]):
                axes[row, col].plot(group["step"], group[metric], color=colours[task], marker=".", alpha=0.8, **style)
        axes[0, col].set_title(det)
        axes[1, col].set_xlabel("step")
        axes[1, col].xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    axes[0, 0].set_ylabel("train loss")
    axes[1, 0].set_ylabel("dev (primary metric)")
    handles = [axes[0, 0].plot([], [], color=c)[0] for c in colours.values()]
    handles += [axes[0, 0].plot([], [], color="grey", **style)[0] for _, style in style_legend]
    fig.legend(handles, tasks + [label for label, _ in style_legend], loc="outside right upper", fontsize=8,
               title="task")
    fig.suptitle(title)
    return fig


def plot_original_curves(run_dirs: list[str | Path], png: str | Path) -> list[Path]:
    curves = original_curves(run_dirs)
    if curves.empty:
        raise ValueError(f"no stage-1 history in {len(run_dirs)} metrics file(s); rerun original")
    seeds = curves["seed"].nunique()
    fig = _curve_grid(curves, f"Stage 1: each DET tuned in its own space ({seeds} seed(s) per task)", ["seed"])
    return save_figure(fig, png)


def plot_decompose_curves(metrics_json: str | Path, png: str | Path) -> list[Path]:
    curves, health = decompose_curves(metrics_json), decompose_health(metrics_json)
    if curves.empty:
        raise ValueError(f"stage-2 metrics {metrics_json} hold no history; rerun decompose")
    labels = {"reconstruction": "reconstruction distance\n(sum over DETs, training batches)",
              "task_loss": "task loss at the mixed point\n(sum over DETs, training batches)",
              "dev_mixed": "dev at fixed random mixing points\n(mean over DETs)"}
    per_det = {"relative_error": "relative reconstruction error\nof the training deltas (1 = none)",
               "saturated": "share of saturated\ndown-projection units (|tanh| > 0.99)",
               "point_norm": "mean norm of the\ntraining points"}
    fig = Figure(figsize=(11, 6.4), layout="constrained")
    axes = fig.subplots(2, 3, sharex=True)
    for ax, (column, label) in zip(axes[0], labels.items()):
        ax.plot(curves["step"], curves[column], marker=".")
        ax.set_title(label, fontsize=9)
    for ax, (column, label) in zip(axes[1], per_det.items()):
        for det, group in health.groupby("det", sort=False):
            ax.plot(group["step"], group[column], marker=".", label=det)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step (0 = the joint-SVD or random start)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if not health.empty:
        axes[1, 0].axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        axes[1, 0].legend(fontsize=8)
    fig.suptitle("Stage 2: learning the shared subspace (from step 0, the start)")
    return save_figure(fig, png)


def plot_optimize_curves(run_dirs: list[str | Path], png: str | Path) -> list[Path]:
    curves = optimize_curves(run_dirs)
    if curves.empty:
        raise ValueError(f"no stage-3 history in {len(run_dirs)} result file(s); rerun optimize")
    fig = _curve_grid(curves, "Stage 3: intrinsic vector trained in the learned (solid), the joint-SVD (dotted) and "
                              "a random (dashed) subspace",
                      ["seed", "subspace", "lr"],
                      styles=lambda k: STAGE3_STYLES[k["subspace"]],
                      style_legend=[(f"{space} subspace", style) for space, style in STAGE3_STYLES.items()])
    return save_figure(fig, png)


def make_figures(transfer_csv, relative_csv, intervals_csv, original_metrics, decompose_metrics, optimize_results,
                 out) -> list[Path]:
    """Every figure of the report: the Figures files `out` (or into that folder), each PNG with its PDF twin."""
    out = Figures.of(out)
    return [*plot_transfer_matrix(transfer_csv, out.transfer_matrix),
            *plot_relative_performance(relative_csv, intervals_csv, out.relative_performance),
            *plot_original_curves(original_metrics, out.curves_original),
            *plot_decompose_curves(decompose_metrics, out.curves_decompose),
            *plot_optimize_curves(optimize_results, out.curves_optimize)]
