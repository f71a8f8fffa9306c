"""profiles/slurm on a real single-node SLURM: config/smoke.yaml end to end as sbatch jobs (.ci/slurm.sh).

Without a SLURM that takes jobs the end-to-end test skips with the reason, except under CI (env CI set),
where it fails; as root under CI it starts one with `.ci/slurm.sh up` and stops it again.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import REPO, WHEELS_DIR, load_config, planned_jobs, snakemake

PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
SLURM_SH = REPO / ".ci" / "slurm.sh"
SMOKE = str(REPO / "config" / "smoke.yaml")
# Rules that train: each stays its own SLURM job so that it gets its own GPU and time limit.
TRAINING_RULES = {"original", "decompose", "optimize"}
GPU_MODEL = "ci"  # the placeholder GPU's model in .ci/slurm.sh
# Given the placeholder GPU in the run: a training rule (its own SLURM job) and transfer (in a group).
GPU_RULES = ("decompose", "transfer")
UP_STATES = {"idle", "mixed", "allocated", "completing"}  # sinfo %T of a node that takes jobs
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


def run(*command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)


def profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


def slurm_down_reason() -> str | None:
    """Why no SLURM job can run here, or None when a node takes jobs."""
    if shutil.which("sbatch") is None:
        return "sbatch not found: SLURM is not installed (as root: .ci/slurm.sh up)"
    try:
        sinfo = run("sinfo", "-h", "-o", "%T", timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 30 s (is slurmctld running?)"
    if sinfo.returncode != 0 or not UP_STATES & set(sinfo.stdout.split()):
        return f"SLURM is not up: `sinfo -h -o %T` says {sinfo.stdout.strip()!r} (as root: .ci/slurm.sh up)"
    return None


@pytest.fixture(scope="module")
def slurm():
    """The running SLURM; under CI as root, one that .ci/slurm.sh starts here and stops afterwards."""
    in_ci = bool(os.environ.get("CI"))
    reason = slurm_down_reason()
    started = False
    try:
        if reason and in_ci and os.geteuid() == 0:
            started = True  # even a failed `up` may have started some daemons: `down` stops those
            up = run("bash", str(SLURM_SH), "up", timeout=600)
            reason = f".ci/slurm.sh up failed:\n{up.stdout[-4000:]}" if up.returncode else slurm_down_reason()
        if reason:
            (pytest.fail if in_ci else pytest.skip)(reason)
        yield
    finally:
        if started:
            down = run("bash", str(SLURM_SH), "down", timeout=120)
            assert down.returncode == 0, down.stdout


def ci_profile(folder: Path, node_cpus: int) -> Path:
    """profiles/slurm with what a one-node cluster without accounting needs; returns the profile's folder."""
    settings = profile()
    settings["cores"] = min(settings["cores"], node_cpus)  # a group job must fit the node's CPUs
    settings["slurm-init-seconds-before-status-checks"] = 2  # the default first waits 40 s
    settings["slurm-keep-successful-logs"] = True  # read below
    settings["keep-going"] = False  # fail fast
    # The profile's GPU-model path, for the GPU rules and every rule grouped with one (README, profile).
    settings["set-resources"] = {rule: {"gpu_model": GPU_MODEL} for rule in sorted(rules_with_gpu_model(settings))}
    if shutil.which("sacct") is None or run("sacct", "-n", "-X").returncode != 0:
        settings["slurm-status-command"] = "squeue"  # no slurmdbd: sacct fails and the plugin would wait forever
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(settings))
    return folder


def gpu_groups(settings: dict) -> set[str]:
    return {settings["groups"][rule] for rule in GPU_RULES if rule in settings["groups"]}


def rules_with_gpu_model(settings: dict) -> set[str]:
    return set(GPU_RULES) | {rule for rule, group in settings["groups"].items() if group in gpu_groups(settings)}


def scontrol_job(job_id: str) -> dict[str, str]:
    shown = run("scontrol", "show", "job", "-o", job_id)
    assert shown.returncode == 0, f"SLURM job {job_id} unknown to scontrol (MinJobAge too short?): {shown.stdout}"
    return dict(field.split("=", 1) for field in shown.stdout.split() if "=" in field)


def slurm_job_kind(log: str, groups: set[str]) -> str:
    """'rule_<rule>' or 'group_<group>' from the plugin's log path .snakemake/slurm_logs/<kind>[_<rules>]/..."""
    parts = Path(log).parts
    kind = parts[parts.index("slurm_logs") + 1]
    for group in groups:
        if kind == f"group_{group}" or kind.startswith(f"group_{group}_"):
            return f"group_{group}"
    return kind


def time_limit(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def rule_resources(config: dict, rule: str) -> dict:
    return {**config["resources"]["default"], **config["resources"].get(rule, {})}


def rules_declaring_gpu(dry_run: str) -> dict[str, bool]:
    """rule -> whether its jobs declare the gpu resource, from the job blocks of a dry run."""
    blocks = re.findall(r"^rule (\w+):\n((?:    .*\n)+)", dry_run, re.MULTILINE)
    declares = {}
    for rule, block in blocks:
        resources = re.search(r"^    resources: (.*)$", block, re.MULTILINE)
        declares[rule] = bool(resources and re.search(r"\bgpu=", resources.group(1)))
    return declares


def test_profile_groups_every_short_job_and_no_training_job(workdir):
    """Snakemake ignores a group naming no rule, and a new CPU rule left out would be one SLURM job per job."""
    settings = profile()
    assert settings["executor"] == "slurm"
    result = snakemake(workdir, "-n", "--configfile", SMOKE)
    assert result.returncode == 0, result.stdout[-3000:]
    declares_gpu = rules_declaring_gpu(result.stdout)
    rules = set(planned_jobs(result.stdout)) - {"all"}
    assert set(declares_gpu) >= rules and TRAINING_RULES <= rules
    grouped = set(settings["groups"])
    assert grouped <= rules, f"groups name no rule of the workflow: {sorted(grouped - rules)}"
    assert not TRAINING_RULES & grouped
    cpu_only = {rule for rule in rules if not declares_gpu[rule]}
    assert cpu_only <= grouped, f"CPU-only rules without a group in profiles/slurm: {sorted(cpu_only - grouped)}"
    assert set(settings["group-components"]) <= set(settings["groups"].values())
    # The profile itself is valid for this snakemake and plugin version.
    planned = snakemake(workdir, "-n", "--workflow-profile", str(PROFILE.parent), "--configfile", SMOKE)
    assert planned.returncode == 0, planned.stdout[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(not any(WHEELS_DIR.glob("*.whl")), reason="data wheels missing: see README, set-up command 2")
def test_smoke_config_runs_as_slurm_jobs(slurm, workdir, tmp_path):
    node_cpus = int(run("sinfo", "-h", "-o", "%c").stdout.split()[0])
    profile_dir = ci_profile(tmp_path / "profile", node_cpus)
    groups = set(profile()["groups"].values())
    # The GPU rules ask for the placeholder GPU: the plugin turns gpu and gpu_model into --gpus=ci:1.
    overrides = "resources=" + json.dumps({rule: {"gpu": 1} for rule in GPU_RULES})
    # Two of smoke.yaml's DETs: the SLURM mechanics are the same for any number, and each job costs seconds.
    smoke = load_config("smoke.yaml")
    smoke["dets"] = {det: smoke["dets"][det] for det in ("lora", "adapter")}
    configfile = tmp_path / "smoke_two_dets.yaml"
    configfile.write_text(yaml.safe_dump(smoke))
    settings = ["--configfile", str(configfile), "--config", f"wheels_dir={WHEELS_DIR}", overrides]
    planned = planned_jobs(snakemake(workdir, "-n", *settings).stdout)

    start = time.monotonic()
    try:
        result = snakemake(workdir, "--workflow-profile", str(profile_dir), *settings, timeout=2400)
    except subprocess.TimeoutExpired as err:  # snakemake was killed: cancel the SLURM jobs it left behind
        ids = [job_id for job_id, _ in SUBMITTED.findall(err.stdout or "")]
        if ids:
            run("scancel", *ids)
        pytest.fail(f"the SLURM run took over {err.timeout} s:\n{(err.stdout or '')[-4000:]}")
    minutes = (time.monotonic() - start) / 60
    assert result.returncode == 0, f"after {minutes:.1f} min:\n{result.stdout[-6000:]}"
    print(f"config/smoke.yaml through SLURM: {minutes:.1f} min")

    # Every output is there and current.
    again = snakemake(workdir, "-n", *settings)
    assert "Nothing to be done" in again.stdout, again.stdout[-3000:]
    with open(workdir / "results" / "tables" / "original.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(smoke["tasks"]) * len(smoke["dets"]) * len(smoke["seeds"])
    for table in ("relative_performance.csv", "transfer.csv"):
        assert (workdir / "results" / "tables" / table).stat().st_size > 0

    # Every job ran as a SLURM job: one per job of an ungrouped rule, one per group (smoke.yaml is small
    # enough that each group fits in one), none for rule all (it runs in snakemake itself).
    grouped = profile()["groups"]
    submitted = SUBMITTED.findall(result.stdout)
    kinds = Counter(slurm_job_kind(log, groups) for _, log in submitted)
    expected = {f"rule_{rule}": count for rule, count in planned.items() if rule not in grouped and rule != "all"}
    expected.update({f"group_{group}": 1 for group in groups})
    assert kinds == expected
    assert sum(count for rule, count in planned.items() if rule in grouped) > len(groups)

    resources = smoke["resources"]
    with_gpu = {rule: {**resources.get(rule, {}), "gpu": 1} for rule in GPU_RULES}
    config = {**smoke, "resources": {**resources, **with_gpu}}
    gpu_jobs = {f"group_{grouped[rule]}" if rule in grouped else f"rule_{rule}" for rule in GPU_RULES}
    for job_id, log in submitted:
        assert Path(log).is_file(), f"SLURM log of job {job_id} missing: {log}"
        job = scontrol_job(job_id)
        kind = slurm_job_kind(log, groups)
        assert job["JobState"] == "COMPLETED", (kind, job)
        assert int(job["NumCPUs"]) <= node_cpus, (kind, job)
        gpus = f"gres:gpu:{GPU_MODEL}:1" if kind in gpu_jobs else None
        assert job.get("TresPerJob") == gpus, (kind, job)
        if kind.startswith("rule_"):  # the config's per-rule resources reached sbatch
            wanted = rule_resources(config, kind.removeprefix("rule_"))
            assert int(job["NumCPUs"]) == wanted["threads"], (kind, job)
            assert job["MinMemoryNode"] == f"{wanted['mem_mb']}M", (kind, job)
            assert job["TimeLimit"] == time_limit(wanted["runtime"]), (kind, job)
