"""The Snakemake layer: what a dry run plans, lint, and a real end-to-end run of config/smoke.yaml."""
from __future__ import annotations

import csv
import json
import re
from collections import Counter

import pytest
from safetensors import safe_open

from conftest import REPO, WHEELS_DIR, load_config, planned_jobs, snakemake

SMOKE = str(REPO / "config" / "smoke.yaml")
DETS = ["adapter", "lora", "prefix", "prompt", "bitfit"]
SMOKE_TASKS = ["sms_spam", "vader_tweets"]


STAGE_RULES = ("prepare_task", "original", "collect_vectors", "original_table", "decompose", "optimize",
               "transfer", "result_tables")


def stage_jobs(output: str) -> dict[str, int]:
    """The planned jobs of the stage rules (later rules such as figures are checked by their own tests)."""
    return {rule: count for rule, count in planned_jobs(output).items() if rule in STAGE_RULES}


def expected_stage_jobs(config: dict, stage3_tasks: int) -> dict[str, int]:
    tasks, dets, seeds = len(config["tasks"]), len(config["dets"]), len(config["seeds"])
    return {"prepare_task": tasks, "original": tasks * dets * seeds, "collect_vectors": dets, "original_table": 1,
            "decompose": 1, "optimize": stage3_tasks * dets * seeds, "transfer": stage3_tasks * seeds,
            "result_tables": 1}


def test_dry_run_of_the_embedded_default_plans_every_stage(workdir):
    result = snakemake(workdir, "-n")
    assert result.returncode == 0, result.stdout
    config = load_config("config.yaml")
    assert len(config["tasks"]) == 7 and len(config["decompose"]["unseen_tasks"]) == 2
    assert config["decompose"]["optimize_seen"]  # the seen rows: stage 3 on the 5 training tasks too
    assert stage_jobs(result.stdout) == expected_stage_jobs(config, stage3_tasks=7)
    assert planned_jobs(result.stdout)["overlap"] == 1


def test_study_plans_eleven_tasks_three_seeds_and_four_unseen_tasks(workdir):
    result = snakemake(workdir, "-n", "--configfile", str(REPO / "config" / "study.yaml"))
    assert result.returncode == 0, result.stdout
    config = load_config("study.yaml")
    assert len(config["tasks"]) == 11 and len(config["seeds"]) == 3 and len(config["decompose"]["unseen_tasks"]) == 4
    assert stage_jobs(result.stdout) == expected_stage_jobs(config, stage3_tasks=4)


def test_configfile_replaces_the_default_instead_of_merging(workdir):
    """smoke.yaml's two tasks must not gain the default's seven (snakemake alone would merge the dicts)."""
    result = snakemake(workdir, "-n", "--configfile", SMOKE)
    assert result.returncode == 0, result.stdout
    assert stage_jobs(result.stdout) == expected_stage_jobs(load_config("smoke.yaml"), stage3_tasks=1)


def test_single_task_preset_plans_one_source_and_three_targets(workdir):
    result = snakemake(workdir, "-n", "--configfile", str(REPO / "config" / "single_task.yaml"))
    assert result.returncode == 0, result.stdout
    assert stage_jobs(result.stdout) == expected_stage_jobs(load_config("single_task.yaml"), stage3_tasks=3)


def test_one_stage_alone_by_target_and_until(workdir):
    one_task = snakemake(workdir, "results/data/sms_spam/task.json", "-n", "--configfile", SMOKE)
    assert planned_jobs(one_task.stdout) == {"prepare_task": 1}
    until = snakemake(workdir, "-n", "--configfile", SMOKE, "--until", "prepare_task")
    assert planned_jobs(until.stdout) == {"prepare_task": 2}


def test_lint_reports_nothing(workdir):
    result = snakemake(workdir, "--lint")
    assert result.returncode == 0, result.stdout
    assert "Lints for" not in result.stdout, result.stdout
    assert "Congratulations" in result.stdout


def test_readme_test_command_is_what_ci_runs():
    """.ci/run performs the README's second set-up command, step by step."""
    readme = (REPO / "README.md").read_text()
    command = next(line.strip() for line in readme.splitlines() if line.endswith("&& pytest"))
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    for step in command.split(" && "):
        assert step in ci_lines, f"README step {step!r} is missing from .ci/run"


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.skipif(not any(WHEELS_DIR.glob("*.whl")), reason="data wheels missing: see README, set-up command 2")
def test_smoke_config_runs_end_to_end(workdir):
    settings = ["--configfile", SMOKE, "--config", f"wheels_dir={WHEELS_DIR}"]
    result = snakemake(workdir, "--cores", "2", *settings, timeout=1500)
    assert result.returncode == 0, result.stdout[-5000:]

    results = workdir / "results"
    rows = read_csv(results / "tables" / "original.csv")
    assert sorted((row["task"], row["det"]) for row in rows) == sorted((t, d) for t in SMOKE_TASKS for d in DETS)
    for row in rows:
        for column in ("seed", "params", "dev", "test", "majority"):
            assert row[column] != "", (column, row)
        assert int(row["params"]) > 0

    for det in DETS:
        index = read_csv(results / "vectors" / f"{det}_index.csv")
        assert [row["task"] for row in index] == load_config("smoke.yaml")["decompose"]["train_tasks"]
        with safe_open(str(results / "vectors" / f"{det}.safetensors"), framework="pt") as f:
            deltas = f.get_tensor("deltas")
        assert deltas.shape[0] == len(index)
        params = {int(row["params"]) for row in rows if row["det"] == det}
        assert params == {deltas.shape[1]}

    relative = read_csv(results / "tables" / "relative_performance.csv")
    assert sorted(row["det"] for row in relative) == sorted(DETS)
    assert {row["task"] for row in relative} == {"vader_tweets"} and {row["task_role"] for row in relative} == {"unseen"}
    for row in relative:
        assert float(row["relative"]) == pytest.approx(100 * float(row["subspace"]) / float(row["own_space"]), abs=0.01)
        assert row["random_subspace"] != ""
    transfer = read_csv(results / "tables" / "transfer.csv")
    assert sorted((row["source_det"], row["target_det"]) for row in transfer) == sorted((s, t) for s in DETS for t in DETS)
    assert "| source_det |" in (results / "tables" / "transfer.md").read_text()

    logs = [p for p in (results / "logs").rglob("*.log") if p.relative_to(results / "logs").parts[0].split(".")[0] in STAGE_RULES]
    assert len(logs) == sum(expected_stage_jobs(load_config("smoke.yaml"), stage3_tasks=1).values())
    metrics = json.loads((results / "original" / "sms_spam" / "lora" / "seed42" / "metrics.json").read_text())
    assert metrics["steps"] == load_config("smoke.yaml")["original"]["steps"]

    # The report layer: figures, a benchmark record per heavy job summed per stage, the summary, the HTML report.
    for name in ("transfer_matrix", "relative_performance", "curves_original", "curves_decompose", "curves_optimize"):
        for fmt in ("png", "pdf"):
            assert (results / "figures" / f"{name}.{fmt}").stat().st_size > 1000, (name, fmt)
    heavy = {"original", "decompose", "optimize", "transfer", "landscape"}
    expected = {rule: n for rule, n in expected_stage_jobs(load_config("smoke.yaml"), stage3_tasks=1).items() if rule in heavy}
    expected["landscape"] = 1  # smoke.yaml: the default, one landscape of the first unseen task
    records = Counter(p.relative_to(results / "benchmarks").parts[0] for p in (results / "benchmarks").rglob("*.tsv"))
    assert {rule: records[rule] for rule in heavy} == expected
    resources = {row["rule"]: row for row in read_csv(results / "tables" / "resources.csv")}
    for rule, jobs in expected.items():
        assert int(resources[rule]["jobs"]) == jobs and float(resources[rule]["wall_s"]) > 0
        assert float(resources[rule]["peak_rss_mb"]) > 100, resources[rule]  # a job that loads torch and a model
    summary = (results / "summary.md").read_text()
    for section in ("## Original space", "## Subspace", "## Transfer", "## Landscape", "## Compute"):
        assert section in summary
    assert f"results/original/sms_spam/{{{','.join(sorted(DETS))}}}/seed42/metrics.json" in summary
    report = snakemake(workdir, *settings, "--report", "results/report.html", timeout=600)
    assert report.returncode == 0, report.stdout[-5000:]
    html = (results / "report.html").read_text()
    for name in ("curves_original.png", "transfer_matrix.png", "summary.md", "resources.csv", "original.csv"):
        assert name in html, name

    # Up to date now; changing one DET's option reruns exactly that DET's jobs and what reads them.
    again = snakemake(workdir, "-n", *settings)
    assert "Nothing to be done" in again.stdout, again.stdout
    changed = snakemake(workdir, "-n", *settings, 'dets={"lora": {"rank": 2}}')  # one --config, two entries
    # Stage 1 of LoRA only; the subspace is learned from every DET, so stage 2 and what follows rerun whole.
    assert stage_jobs(changed.stdout) == {"original": 2, "collect_vectors": 1, "original_table": 1, "decompose": 1,
                                          "optimize": 5, "transfer": 1, "result_tables": 1}
    retrained = re.findall(r"rule original:\n(?:.*\n)*?\s+wildcards: task=\w+, det=(\w+)", changed.stdout)
    assert retrained == ["lora"] * 2
