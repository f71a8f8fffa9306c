"""The Snakemake layer: what a dry run plans, lint, and a real end-to-end run of config/smoke.yaml."""
from __future__ import annotations

import csv
import json
import re

import pytest
from safetensors import safe_open

from conftest import REPO, WHEELS_DIR, load_config, planned_jobs, snakemake

SMOKE = str(REPO / "config" / "smoke.yaml")
DETS = ["adapter", "lora", "prefix", "prompt", "bitfit"]
SMOKE_TASKS = ["sms_spam", "vader_tweets"]


def test_dry_run_of_the_embedded_default_plans_every_stage(workdir):
    result = snakemake(workdir, "-n")
    assert result.returncode == 0, result.stdout
    assert planned_jobs(result.stdout) == {
        "prepare_task": 9, "train_det": 9 * 5, "collect_vectors": 5, "stage1_table": 1,
        "decompose": 1, "subspace_train": 2 * 5, "transfer": 2, "subspace_tables": 1, "all": 1,
    }


def test_configfile_replaces_the_default_instead_of_merging(workdir):
    """smoke.yaml's two tasks must not gain the default's nine (snakemake alone would merge the dicts)."""
    result = snakemake(workdir, "-n", "--configfile", SMOKE)
    assert result.returncode == 0, result.stdout
    assert planned_jobs(result.stdout) == {
        "prepare_task": 2, "train_det": 2 * 5, "collect_vectors": 5, "stage1_table": 1,
        "decompose": 1, "subspace_train": 5, "transfer": 1, "subspace_tables": 1, "all": 1,
    }


def test_single_task_preset_plans_one_source_and_three_targets(workdir):
    result = snakemake(workdir, "-n", "--configfile", str(REPO / "config" / "single_task.yaml"))
    assert result.returncode == 0, result.stdout
    assert planned_jobs(result.stdout) == {
        "prepare_task": 4, "train_det": 4 * 5, "collect_vectors": 5, "stage1_table": 1,
        "decompose": 1, "subspace_train": 3 * 5, "transfer": 3, "subspace_tables": 1, "all": 1,
    }


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
    rows = read_csv(results / "tables" / "stage1.csv")
    assert sorted((row["task"], row["det"]) for row in rows) == sorted((t, d) for t in SMOKE_TASKS for d in DETS)
    for row in rows:
        for column in ("seed", "params", "dev", "test", "majority"):
            assert row[column] != "", (column, row)
        assert int(row["params"]) > 0

    for det in DETS:
        index = read_csv(results / "vectors" / f"{det}_index.csv")
        assert sorted(row["task"] for row in index) == SMOKE_TASKS
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

    logs = sorted(p.relative_to(results / "logs").as_posix() for p in (results / "logs").rglob("*.log"))
    assert len(logs) == 2 + 2 * 5 + 5 + 1 + 1 + 5 + 1 + 1
    metrics = json.loads((results / "stage1" / "sms_spam" / "lora" / "seed42" / "metrics.json").read_text())
    assert metrics["steps"] == load_config("smoke.yaml")["stage1"]["steps"]

    # Up to date now; changing one DET's option reruns exactly that DET's jobs and what reads them.
    again = snakemake(workdir, "-n", *settings)
    assert "Nothing to be done" in again.stdout, again.stdout
    changed = snakemake(workdir, "-n", *settings, 'dets={"lora": {"rank": 2}}')  # one --config, two entries
    # Stage 1 of LoRA only; the subspace is learned from every DET, so stage 2 and what follows rerun whole.
    assert planned_jobs(changed.stdout) == {"train_det": 2, "collect_vectors": 1, "stage1_table": 1, "decompose": 1,
                                            "subspace_train": 5, "transfer": 1, "subspace_tables": 1, "all": 1}
    retrained = re.findall(r"rule train_det:\n(?:.*\n)*?\s+wildcards: task=\w+, det=(\w+)", changed.stdout)
    assert retrained == ["lora"] * 2
