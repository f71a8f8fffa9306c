"""The report layer on small synthetic results: figures, results/summary.md, the per-stage resource table, and
the provenance patterns that name the files behind every row."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from conftest import REPO, planned_jobs, snakemake
from deltaspace.cli import main
from deltaspace.figures import (decompose_curves, make_figures, optimize_curves, original_curves, relative_summary,
                                transfer_matrix)
from deltaspace.paths import ResourceTable
from deltaspace.resource_table import resource_table
from deltaspace.sources import compact_paths
from deltaspace.summary import write_summary
from deltaspace.tables import relative_performance_table, original_table, transfer_table

DETS = ["adapter", "lora", "prefix"]
TRAIN_TASK, UNSEEN = "alpha", "beta"
SEEDS = [2, 10]  # 2 and 10: the provenance patterns must sort seeds as numbers


def stage1_score(task, det, seed):
    return 0.6 + 0.1 * DETS.index(det) + (0.05 if task == UNSEEN else 0.0) + 0.01 * SEEDS.index(seed)


def subspace_score(det, seed):
    return 0.5 + 0.05 * DETS.index(det) + 0.02 * SEEDS.index(seed)


def transfer_score(source, target, seed):
    return 0.3 + 0.1 * DETS.index(source) + 0.01 * DETS.index(target) + 0.02 * SEEDS.index(seed)


INIT_TEST = 0.3  # theta_init's test score, every task, DET and seed
# Stage 3's baselines on every run: each a multiple of 1 / N_TEST, so its predictions file scores it exactly.
BASELINE_SCORES = {"init": INIT_TEST, "svd_subspace": 0.45, "random_subspace": 0.4, "best_train_point": 0.35}
N_TEST = 100


def write_predictions(path, scores: dict[str, float]):
    """A stage-3 predictions file whose column c is right on exactly the first round(scores[c] * N_TEST) examples."""
    gold = np.where(np.arange(N_TEST) % 2 == 0, "positive", "negative")
    columns = {"example": np.arange(N_TEST), "gold": gold, "references": [f'["{g}"]' for g in gold]}
    for name, score in scores.items():
        right = np.arange(N_TEST) < round(score * N_TEST)
        columns[name] = np.where(right, gold, np.where(gold == "positive", "negative", "positive"))
    pd.DataFrame(columns).to_csv(path, index=False)


def write_results(root):
    """A results tree of the shape the stages write: two tasks, three DETs, two seeds; beta is unseen."""
    stage1_runs, stage3_runs, transfer_runs = [], [], []
    for task in (TRAIN_TASK, UNSEEN):
        for det in DETS:
            for seed in SEEDS:
                run = root / "stage1" / task / det / f"seed{seed}"
                run.mkdir(parents=True)
                score = stage1_score(task, det, seed)
                (run / "metrics.json").write_text(json.dumps({
                    "task": task, "det": det, "method": det, "seed": seed, "params": 10, "primary_metric": "accuracy",
                    "dev": score, "test": score, "test_metrics": {"accuracy": score, "macro_f1": score},
                    "majority": 0.5, "init_dev": 0.4, "init_test": INIT_TEST, "gain": score - INIT_TEST,
                    "history": [{"step": 2, "train_loss": 0.9, "dev_accuracy": score - 0.1},
                                                 {"step": 4, "train_loss": 0.7, "dev_accuracy": score}]}))
                stage1_runs.append(run)
    for det in DETS:
        for seed in SEEDS:
            run = root / "stage3" / UNSEEN / det / f"seed{seed}"
            run.mkdir(parents=True)
            history = [{"lr": lr, "step": step, "train_loss": 1.0 / step, "dev": 0.5} for lr in (0.01, 0.05)
                       for step in (2, 4)]
            scores = {"subspace": subspace_score(det, seed), **BASELINE_SCORES}
            write_predictions(run / "predictions.csv", scores)
            (run / "result.json").write_text(json.dumps({
                "task": UNSEEN, "det": det, "seed": seed, "primary_metric": "accuracy", "test": scores["subspace"],
                "init_test": scores["init"], "svd_test": scores["svd_subspace"],
                "random_test": scores["random_subspace"], "best_train_point_test": scores["best_train_point"],
                "predictions": str(run / "predictions.csv"), "lr": 0.01, "history": history,
                "svd_history": history[:3], "random_history": history[:2]}))
            stage3_runs.append(run)
    for seed in SEEDS:
        path = root / "transfer" / UNSEEN / f"seed{seed}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([{"task": UNSEEN, "seed": seed, "source_det": s, "target_det": t,
                       "score": transfer_score(s, t, seed), "source": str(root / "stage3" / UNSEEN / s / f"seed{seed}" / "result.json")}
                      for s in DETS for t in DETS]).to_csv(path, index=False)
        transfer_runs.append(path)
    (root / "subspace").mkdir()
    (root / "subspace" / "metrics.json").write_text(json.dumps({"history": [
        {"step": 2, "reconstruction": 3.0, "task_loss": 2.0, "dev_mixed": 0.5},
        {"step": 4, "reconstruction": 1.0, "task_loss": 1.5, "dev_mixed": 0.6}]}))
    tables = root / "tables"
    original_table(stage1_runs, tables / "original.csv")
    relative_performance_table(stage3_runs, tables / "original.csv", {UNSEEN: "unseen"}, tables / "relative_performance.csv",
                               tables / "relative_performance.md", tables / "relative_intervals.csv")
    transfer_table(transfer_runs, tables / "original.csv", tables / "transfer.csv", tables / "transfer.md")
    return {"stage1_runs": stage1_runs, "stage3_runs": stage3_runs, "transfer_runs": transfer_runs}


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    return root, write_results(root)


BENCHMARK_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_benchmark(path, seconds, max_rss, cpu):
    """One job's record in the format of Snakemake's `benchmark:` directive."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(BENCHMARK_HEADER + f"{seconds}\t0:00:01\t{max_rss}\t1.0\t1.0\t1.0\t0.0\t0.0\t50.0\t{cpu}\n")
    return path


# ---- provenance -------------------------------------------------------------------------------------------


def test_compact_paths_names_exactly_the_files():
    runs = [f"results/original/trec/{det}/seed{seed}/metrics.json" for det in ("lora", "adapter") for seed in (10, 2)]
    assert compact_paths(runs) == "results/original/trec/{adapter,lora}/seed{2,10}/metrics.json"
    assert compact_paths(runs[:1] * 3) == runs[0]
    # Not a full product of the varying parts: a pattern would name a file that is not among them.
    partial = runs[:3]
    assert compact_paths(partial) == "; ".join(sorted(partial))
    assert compact_paths(["a/x.tsv", "a/b/y.tsv"]) == "a/b/y.tsv; a/x.tsv"


# ---- figures ----------------------------------------------------------------------------------------------


def test_transfer_matrix_averages_over_tasks_and_seeds(results):
    root, _ = results
    matrix = transfer_matrix(pd.read_csv(root / "tables" / "transfer.csv"))
    assert list(matrix.index) == DETS and list(matrix.columns) == DETS
    for s in DETS:
        for t in DETS:
            expected = np.mean([100 * transfer_score(s, t, seed) / stage1_score(UNSEEN, t, seed) for seed in SEEDS])
            assert matrix.loc[s, t] == pytest.approx(expected, abs=0.01)


def test_relative_summary_spreads_over_seeds(results):
    root, _ = results
    summary = relative_summary(pd.read_csv(root / "tables" / "relative_performance.csv")).set_index("det")
    for det in DETS:
        scores = [subspace_score(det, seed) for seed in SEEDS]
        assert summary.loc[det, "subspace"] == pytest.approx(np.mean(scores), abs=1e-4)
        assert summary.loc[det, "subspace_min"] == pytest.approx(min(scores), abs=1e-4)
        assert summary.loc[det, "subspace_max"] == pytest.approx(max(scores), abs=1e-4)
        assert summary.loc[det, "seeds"] == len(SEEDS)
        for baseline, score in BASELINE_SCORES.items():  # the same on every seed: no spread
            assert summary.loc[det, [baseline, f"{baseline}_min", f"{baseline}_max"]].tolist() == pytest.approx([score] * 3)


def test_training_curves_read_every_evaluation(results):
    root, runs = results
    stage1 = original_curves(runs["stage1_runs"])
    assert len(stage1) == 2 * len(DETS) * len(SEEDS) * 3  # the init and two evaluations per run
    alpha_lora = stage1[(stage1["task"] == TRAIN_TASK) & (stage1["det"] == "lora") & (stage1["seed"] == 2)]
    assert alpha_lora["step"].tolist() == [0, 2, 4]
    assert alpha_lora["dev"].tolist() == pytest.approx([0.4, stage1_score(TRAIN_TASK, "lora", 2) - 0.1,
                                                        stage1_score(TRAIN_TASK, "lora", 2)])
    assert decompose_curves(root / "subspace" / "metrics.json")["reconstruction"].tolist() == [3.0, 1.0]
    stage3 = optimize_curves(runs["stage3_runs"])
    assert stage3.groupby("subspace").size().to_dict() == {"learned": 4 * 6, "svd": 3 * 6, "random": 2 * 6}


def test_figures_are_png_and_pdf_and_reproducible(results, tmp_path):
    root, runs = results
    out = tmp_path / "figures"
    arguments = (root / "tables" / "transfer.csv", root / "tables" / "relative_performance.csv",
                 root / "tables" / "relative_intervals.csv", runs["stage1_runs"], root / "subspace" / "metrics.json",
                 runs["stage3_runs"], out)
    paths = make_figures(*arguments)
    names = ["transfer_matrix", "relative_performance", "curves_original", "curves_decompose", "curves_optimize"]
    assert sorted(p.name for p in paths) == sorted(f"{n}.{fmt}" for n in names for fmt in ("png", "pdf"))
    for name in names:
        image = imread(out / f"{name}.png")
        assert image.shape[0] > 200 and image.shape[1] > 300
        assert image[..., :3].std() > 0.05  # something was drawn, not a blank canvas
        assert (out / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    first = {p.name: p.read_bytes() for p in paths}
    make_figures(*arguments)
    assert {p.name: p.read_bytes() for p in paths} == first
    assert not list(out.glob(".*.tmp"))


def test_figures_name_the_file_and_column_that_is_wrong(results, tmp_path):
    root, runs = results
    broken = tmp_path / "transfer.csv"
    pd.read_csv(root / "tables" / "transfer.csv").drop(columns="relative").to_csv(broken, index=False)
    with pytest.raises(ValueError, match=r"transfer table .*transfer\.csv lacks column\(s\) \['relative'\]"):
        make_figures(broken, root / "tables" / "relative_performance.csv", root / "tables" / "relative_intervals.csv",
                     runs["stage1_runs"], root / "subspace" / "metrics.json", runs["stage3_runs"], tmp_path / "figures")
    with pytest.raises(FileNotFoundError, match="stage-2 metrics .*missing.json does not exist"):
        make_figures(root / "tables" / "transfer.csv", root / "tables" / "relative_performance.csv",
                     root / "tables" / "relative_intervals.csv", runs["stage1_runs"], tmp_path / "missing.json",
                     runs["stage3_runs"], tmp_path / "figures")
    broken_intervals = tmp_path / "relative_intervals.csv"
    pd.read_csv(root / "tables" / "relative_intervals.csv").drop(columns="high").to_csv(broken_intervals, index=False)
    with pytest.raises(ValueError, match=r"interval table .*relative_intervals\.csv lacks column\(s\) \['high'\]"):
        make_figures(root / "tables" / "transfer.csv", root / "tables" / "relative_performance.csv", broken_intervals,
                     runs["stage1_runs"], root / "subspace" / "metrics.json", runs["stage3_runs"], tmp_path / "figures")


# ---- summary ----------------------------------------------------------------------------------------------


def markdown_rows(text, first_cell):
    """The cells of the markdown table rows of `text` whose first cell is first_cell."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]
    return [row for row in rows if row[0] == first_cell]


def section(text, title):
    """The part of the summary page under the heading that starts with `title`, up to the next heading."""
    (part,) = [p for p in text.split("\n## ") if p.startswith(title)]
    return part


def test_summary_tables_hold_the_numbers_and_their_sources(results, tmp_path):
    root, runs = results
    tables = root / "tables"
    out = tmp_path / "summary.md"
    text = write_summary(out, tables / "original.csv", tables / "relative_performance.csv",
                         tables / "relative_intervals.csv", tables / "transfer.csv", runs["transfer_runs"])
    assert out.read_text() == text

    (unseen_row,) = markdown_rows(text, UNSEEN)
    lora = [stage1_score(UNSEEN, "lora", seed) for seed in SEEDS]
    assert f"{np.mean(lora):.3f} ± {np.std(lora, ddof=1):.3f} (init {INIT_TEST:.3f})" in unseen_row
    assert unseen_row[-1] == f"`{root}/stage1/{UNSEEN}/{{adapter,lora,prefix}}/seed{{2,10}}/metrics.json`"

    relative_part = section(text, "Subspace: relative performance")
    (prefix_row,) = [row for row in markdown_rows(relative_part, "unseen") if row[1] == "prefix"]
    relative = [100 * subspace_score("prefix", s) / stage1_score(UNSEEN, "prefix", s) for s in SEEDS]
    assert f"{np.mean(relative):.1f} ± {np.std(relative, ddof=1):.1f}" in prefix_row
    # gain relative = (subspace - init) / (own space - init) x 100, by hand per seed
    gained = [100 * (subspace_score("prefix", s) - INIT_TEST) / (stage1_score(UNSEEN, "prefix", s) - INIT_TEST)
              for s in SEEDS]
    assert f"{np.mean(gained):.1f} ± {np.std(gained, ddof=1):.1f}" in prefix_row
    assert f"{INIT_TEST:.3f} ± 0.000" in prefix_row and "0.450 ± 0.000" in prefix_row  # init, svd subspace
    assert prefix_row[-1] == (f"`{root}/stage3/{UNSEEN}/prefix/seed{{2,10}}/result.json; "
                              f"{root}/stage1/{UNSEEN}/prefix/seed{{2,10}}/metrics.json`")

    # The pooled interval over both seeds' test sets: subspace minus theta_init, by hand mean(0.55 - 0.3, 0.57 - 0.3).
    (lora_line,) = [line for line in section(text, "Is the learned subspace").splitlines()
                    if line.startswith("- **lora**")]
    assert "(2 task-seed test sets, 200 examples)" in lora_line
    assert "+0.260 vs theta_init [" in lora_line and "subspace > theta_init (95% CI excludes 0)" in lora_line

    (adapter_row,) = markdown_rows(text, "adapter")
    to_lora = np.mean([100 * transfer_score("adapter", "lora", s) / stage1_score(UNSEEN, "lora", s) for s in SEEDS])
    assert adapter_row[2] == f"{to_lora:.1f}"
    assert adapter_row[-1] == f"`{root}/transfer/{UNSEEN}/seed{{2,10}}.csv`"
    assert "## Landscape" not in text and "## Compute" not in text


def test_summary_adds_landscape_and_compute_when_given(results, tmp_path):
    root, runs = results
    tables = root / "tables"
    pd.DataFrame([{"task": UNSEEN, "seed": 2, "area_fraction": 0.25}]).to_csv(tables / "landscape_area.csv", index=False)
    bench = write_benchmark(tmp_path / "bench" / "decompose.tsv", 12.5, 800.0, 20.0)
    resource_table([("decompose", bench)], tables)  # resources.csv and .md in that folder
    text = write_summary(tmp_path / "summary.md", tables / "original.csv", tables / "relative_performance.csv",
                         tables / "relative_intervals.csv", tables / "transfer.csv", runs["transfer_runs"],
                         resources_csv=tables / "resources.csv",
                         landscape_csv=tables / "landscape_area.csv")
    (landscape_row,) = markdown_rows(text, UNSEEN)[1:]  # the stage-1 row comes first
    assert landscape_row[2] == "0.250" and landscape_row[-1] == f"`{tables / 'landscape_area.csv'}`"
    (compute_row,) = markdown_rows(text, "stage 2")
    assert compute_row[1:4] == ["decompose", "1", "12.5"] and compute_row[-1] == f"`{bench}`"


def test_summary_rejects_a_transfer_table_without_its_runs(results, tmp_path):
    root, runs = results
    tables = root / "tables"
    with pytest.raises(ValueError, match=r"\(task, seed\) \[\('beta', 10\)\] that no given transfer result holds"):
        write_summary(tmp_path / "summary.md", tables / "original.csv", tables / "relative_performance.csv",
                      tables / "relative_intervals.csv", tables / "transfer.csv", runs["transfer_runs"][:1])


# ---- resource table ---------------------------------------------------------------------------------------


def test_resource_table_sums_time_and_keeps_the_peak_per_stage(tmp_path):
    bench = tmp_path / "benchmarks"
    records = [("original", write_benchmark(bench / "original" / t / "lora" / "seed42.tsv", s, rss, cpu))
               for t, s, rss, cpu in (("a", 10.0, 500.0, 9.0), ("b", 20.0, 700.0, 18.0))]
    records.append(("decompose", write_benchmark(bench / "decompose" / "subspace.tsv", 5.0, "NA", 4.0)))
    table = resource_table(records, ResourceTable(tmp_path / "resources.csv", tmp_path / "resources.md")).set_index("rule")
    assert table.loc["original"].to_dict() == {
        "stage": "stage 1", "jobs": 2, "wall_s": 30.0, "cpu_s": 27.0, "peak_rss_mb": 700.0,
        "source": f"{bench}/original/{{a,b}}/lora/seed42.tsv"}
    assert table.loc["decompose", "stage"] == "stage 2" and np.isnan(table.loc["decompose", "peak_rss_mb"])
    assert pd.read_csv(tmp_path / "resources.csv")["wall_s"].tolist() == [30.0, 5.0]
    total = markdown_rows((tmp_path / "resources.md").read_text(), "total")[0]
    assert total[3:6] == ["35.0", "31.0", "700.0"]


def test_resource_table_command_names_a_bad_benchmark_file(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("seconds\n1\n")
    code = main(["resource_table", "--benchmarks", f"transfer={bad}", "--out", f"table={tmp_path / 'r.csv'}",
                 f"summary={tmp_path / 'r.md'}"])
    assert code == 1
    error = capsys.readouterr().err
    assert "benchmark of rule transfer" in error and str(bad) in error and "lacks column(s)" in error


# ---- the rules --------------------------------------------------------------------------------------------


def test_dry_run_sums_the_benchmark_of_every_heavy_job(workdir):
    result = snakemake(workdir, "-n", "-p", "--configfile", str(REPO / "config" / "smoke.yaml"), timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    jobs = planned_jobs(result.stdout)
    assert jobs["figures"] == jobs["resource_table"] == jobs["summary"] == 1
    (command,) = [line for line in result.stdout.splitlines() if "deltaspace resource_table" in line]
    for rule in ("original", "decompose", "optimize", "transfer", "landscape"):
        assert command.count(f" {rule}=results/benchmarks/{rule}/") == jobs[rule], rule
    (summary,) = [line for line in result.stdout.splitlines() if "deltaspace summary" in line]
    assert "--resources-csv results/tables/resources.csv" in summary
    assert "--landscape-csv results/tables/landscape_area.csv" in summary
