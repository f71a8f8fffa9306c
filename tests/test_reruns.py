"""Partial reruns through real Snakemake runs of a tiny workflow: what a changed setting or an added task reruns,
and a job killed mid-training (kill -9) that resumes from its checkpoint to the numbers of an uninterrupted run."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import SNAKEFILE, load_config, planned_jobs, snakemake
from deltaspace.io import load_tensors
from deltaspace.decompose import decompose
from test_subspace import tiny_stage2  # noqa: F401,F811  (a fixture: stage 1 and 2 of two DETs on a tiny model)

DETS = {"lora": {"method": "lora", "rank": 1, "alpha": 2}, "prompt": {"method": "prompt", "length": 2}}
STEPS = 60  # stage 1: long enough that a job can be killed between its first checkpoint (step 2) and its end
# Stages 1 to 3 and transfer, not the figures and reports after them: what these tests are about, and faster.
TARGET = "results/tables/relative_performance.csv"
STAGE1_AND_2 = {"prepare_task", "original", "collect_vectors", "original_table", "decompose"}
WORDS = ["movie", "acting", "plot", "time", "waste", "lunch", "tomorrow", "prize", "message", "france"]


def write_csv_task(path: Path, positive: str, negative: str) -> Path:
    """A two-class task whose label shows in one word; every text unique (splits never share a text)."""
    rows = ["text,label"]
    for i in range(40):
        label = i % 2
        filler = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(1 + i // len(WORDS)))
        rows.append(f"{[negative, positive][label]} {filler} {i},{label}")
    text = "\n".join(rows) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def tiny_config(model_dir: Path, data_dir: Path, tasks=("a", "b")) -> dict:
    """config/smoke.yaml shrunk to a tiny random encoder, two DETs and csv tasks; 'a' trains the subspace."""
    words = {"a": ("great", "awful"), "b": ("excellent", "terrible"), "c": ("positive", "negative")}
    config = load_config("smoke.yaml")
    config["backbone"].update(name_or_path=str(model_dir), max_input_tokens=16, max_answer_tokens=4)
    config["tasks"] = {t: {"source": "file", "path": str(write_csv_task(data_dir / f"{t}.csv", *words[t])),
                           "text_column": "text", "label_column": "label", "labels": ["negative", "positive"]}
                       for t in tasks}
    config["split_sizes"] = {"train": 16, "dev": 8, "test": 8}
    config["dets"] = DETS
    config["original"].update(steps=STEPS, eval_every=2, batch_size=4, eval_batch_size=8)
    config["decompose"].update(train_tasks=["a"], unseen_tasks=[t for t in tasks if t != "a"], steps=4,
                              eval_every=2, batch_size=4, eval_batch_size=8, dev_examples=8)
    config["optimize"].update(steps=2, eval_every=2, batch_size=4, eval_batch_size=8)
    config.update(device="cpu", precision="fp32")  # identical numbers on every machine and in every run
    config["resources"] = {"default": {"threads": 1, "mem_mb": 1000, "runtime": 10, "gpu": 0}}
    return config


def write_config(workdir: Path, config: dict, name: str = "config.yaml") -> str:
    path = workdir / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="module")
def completed_run(tiny_model_dirs, tmp_path_factory):
    """(workdir, config file) of one uninterrupted run of the tiny workflow up to TARGET."""
    root = tmp_path_factory.mktemp("reruns")
    data_dir, workdir = root / "data", root / "work"
    data_dir.mkdir()
    workdir.mkdir()
    configfile = write_config(workdir, tiny_config(tiny_model_dirs["encoder"], data_dir))
    result = snakemake(workdir, TARGET, "--cores", "2", "--configfile", configfile, timeout=900)
    assert result.returncode == 0, result.stdout[-5000:]
    return workdir, configfile


def planned(dry_run) -> dict[str, int]:
    """{rule: jobs} a dry run plans; empty when everything is up to date."""
    assert dry_run.returncode == 0, dry_run.stdout[-3000:]
    return {} if "Nothing to be done" in dry_run.stdout else planned_jobs(dry_run.stdout)


def retrained(dry_run_output: str) -> list[tuple[str, str]]:
    """(task, det) of every original job a dry run plans."""
    return re.findall(r"rule original:\n(?:.*\n)*?\s+wildcards: task=(\w+), det=(\w+)", dry_run_output)


@pytest.mark.slow
def test_a_stage2_setting_reruns_stage2_and_what_follows_but_not_stage1(completed_run):
    workdir, configfile = completed_run
    again = snakemake(workdir, TARGET, "-n", "--configfile", configfile)
    assert not STAGE1_AND_2 & set(planned(again)), again.stdout[-3000:]  # up to date (up to stage 2 at least)
    changed = snakemake(workdir, TARGET, "-n", "--configfile", configfile, "--config", 'decompose={"lambda": 1.0}')
    jobs = planned(changed)
    assert jobs["decompose"] == 1 and jobs["transfer"] == 1 and jobs["result_tables"] == 1
    assert jobs["optimize"] == len(DETS)  # one unseen task
    assert not (STAGE1_AND_2 - {"decompose"}) & set(jobs), jobs
    assert re.search(r"rule decompose:\n(?:.*\n)*?\s+reason: Params have changed", changed.stdout)


@pytest.mark.slow
def test_an_added_task_trains_only_that_tasks_jobs(completed_run, tiny_model_dirs):
    workdir, _ = completed_run
    config = tiny_config(tiny_model_dirs["encoder"], workdir.parent / "data", tasks=("a", "b", "c"))
    added = snakemake(workdir, TARGET, "-n", "--configfile", write_config(workdir, config, "added.yaml"))
    jobs = planned(added)
    assert jobs["prepare_task"] == 1 and jobs["overlap"] == 1  # the guard checks the new task list first
    assert jobs["original"] == len(DETS) * len(config["seeds"])
    assert sorted(retrained(added.stdout)) == sorted(("c", det) for det in DETS)
    # The new task is unseen: the subspace, learned from the train tasks only, stays as it is.
    assert "collect_vectors" not in jobs and "decompose" not in jobs, jobs


def running_in_group(pgid: int) -> list[str]:
    """Processes of a process group that still run (zombies, which only wait to be reaped, do not count)."""
    running = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError):
            continue
        if int(group) == pgid and state != "Z":
            running.append(stat.parent.name)
    return running


@pytest.mark.slow
def test_a_job_killed_mid_training_resumes_to_the_uninterrupted_numbers(completed_run, tmp_path):
    reference, configfile = completed_run
    workdir = tmp_path / "killed"
    shutil.copytree(reference / "results/data/a", workdir / "results/data/a")  # prepared: one job fewer to start
    run = "results/original/a/lora/seed42"
    checkpoint = workdir / "results/checkpoints/original/a/lora/seed42/last.pt"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
               f"{run}/metrics.json", "--cores", "1", "--configfile", configfile]  # targets before --configfile
    with open(tmp_path / "killed.log", "w") as log:
        started = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not checkpoint.exists() and started.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checkpoint.exists(), (tmp_path / "killed.log").read_text()[-3000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(started.pid, signal.SIGKILL)  # snakemake and its job together, as in a crash
        started.wait(timeout=60)
    deadline = time.monotonic() + 30
    while running_in_group(started.pid) and time.monotonic() < deadline:  # the job too, not just snakemake
        time.sleep(0.1)
    assert not running_in_group(started.pid)
    assert not (workdir / run / "metrics.json").exists(), f"the job ended before the kill: raise STEPS ({STEPS})"

    # A kill -9 leaves Snakemake's lock behind: --unlock, then the rerun restarts the incomplete job.
    unlocked = snakemake(workdir, f"{run}/metrics.json", "--unlock", "--configfile", configfile)
    assert unlocked.returncode == 0, unlocked.stdout[-3000:]
    resumed = snakemake(workdir, f"{run}/metrics.json", "--cores", "1", "--rerun-incomplete", "--configfile",
                        configfile, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-5000:]
    job_log = (workdir / "results/logs/original/a/lora/seed42.log").read_text()
    step = int(re.search(r"resumed from \S+ at step (\d+)", job_log).group(1))
    assert 2 <= step < STEPS

    def numbers(folder: Path):
        metrics = json.loads((folder / run / "metrics.json").read_text())
        metrics.pop("seconds")
        return metrics, load_tensors(folder / run / "delta.safetensors")[0]["delta"]

    (metrics, delta), (whole_metrics, whole_delta) = numbers(workdir), numbers(reference)
    assert metrics == whole_metrics
    assert torch.equal(delta, whole_delta)


def test_a_killed_decompose_resumes_to_the_uninterrupted_subspace(tiny_stage2, tmp_path):  # noqa: F811
    root, spec, data_dirs, whole = tiny_stage2

    class Killed(Exception):
        pass

    def kill_at_first_checkpoint(step):
        raise Killed

    with pytest.raises(Killed):
        decompose(spec, root / "vectors", data_dirs, tmp_path / "s2", tmp_path / "ck", log=lambda m: None,
                  on_checkpoint=kill_at_first_checkpoint)
    assert not (tmp_path / "s2" / "subspace.safetensors").exists()
    messages = []
    resumed = decompose(spec, root / "vectors", data_dirs, tmp_path / "s2", tmp_path / "ck", log=messages.append)
    assert any("resumed" in m and f"at step {spec['decompose']['eval_every']}" in m for m in messages)
    assert {k: v for k, v in resumed.items() if k != "seconds"} == {k: v for k, v in whole.items() if k != "seconds"}
    tensors, whole_tensors = (load_tensors(d / "subspace.safetensors")[0] for d in (tmp_path / "s2", root / "s2"))
    assert tensors.keys() == whole_tensors.keys()
    assert all(torch.equal(tensors[k], whole_tensors[k]) for k in tensors)


CORRUPT_CHECKPOINTS = {"unreadable": b"\x00 not a torch file", "foreign": None}  # None: a valid file, other settings


def _spoil(path, kind):
    path.parent.mkdir(parents=True, exist_ok=True)
    if CORRUPT_CHECKPOINTS[kind] is None:
        torch.save({"digest": "written-for-other-settings", "step": 3}, path)
    else:
        path.write_bytes(CORRUPT_CHECKPOINTS[kind])


@pytest.mark.parametrize("kind", list(CORRUPT_CHECKPOINTS))
def test_decompose_restarts_past_a_corrupt_or_foreign_checkpoint(tiny_stage2, tmp_path, kind):  # noqa: F811
    root, spec, data_dirs, whole = tiny_stage2
    _spoil(tmp_path / "ck" / "last.pt", kind)
    messages = []
    again = decompose(spec, root / "vectors", data_dirs, tmp_path / "s2", tmp_path / "ck" / "last.pt",
                      log=messages.append)
    assert any("ignoring" in m and str(tmp_path / "ck" / "last.pt") in m for m in messages), messages
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in whole.items() if k != "seconds"}
    tensors, whole_tensors = (load_tensors(d / "subspace.safetensors")[0] for d in (tmp_path / "s2", root / "s2"))
    assert all(torch.equal(tensors[k], whole_tensors[k]) for k in whole_tensors)


@pytest.mark.parametrize("kind", list(CORRUPT_CHECKPOINTS))
def test_original_restarts_past_a_corrupt_or_foreign_checkpoint(tiny_model_dirs, tmp_path, kind):
    from test_original import spec_for, write_task

    from deltaspace.original import train_det

    data = write_task(tmp_path / "data")
    spec = spec_for(tiny_model_dirs["encoder"], "lora", steps=4)
    whole = train_det("toy", "lora", 1, spec, data, tmp_path / "whole", tmp_path / "ck_whole.pt", log=lambda m: None)
    _spoil(tmp_path / "ck.pt", kind)
    messages = []
    again = train_det("toy", "lora", 1, spec, data, tmp_path / "again", tmp_path / "ck.pt", log=messages.append)
    assert any("ignoring" in m for m in messages), messages
    assert again["history"] == whole["history"] and again["test"] == whole["test"]
    deltas = [load_tensors(tmp_path / run / "delta.safetensors")[0]["delta"] for run in ("whole", "again")]
    assert torch.equal(*deltas)
