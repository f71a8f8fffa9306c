"""Per-rule resources as Snakemake plans them: every job's threads, mem_mb and runtime come from the config's
`resources`, and only the rules that train or evaluate a model ask for a GPU."""
from __future__ import annotations

import re

import yaml

from conftest import REPO, load_config, planned_jobs, snakemake

# Rules that run the backbone (train or evaluate): they declare `gpu`; every other rule must not.
GPU_RULES = {"original", "decompose", "optimize", "transfer", "landscape"}

# Distinct numbers per rule, none of them a schema default, so each value seen can only come from this config.
# `default` asks for GPUs too: a CPU-only rule that fell back to it would show them.
RESOURCES = {
    "default": {"threads": 3, "mem_mb": 1111, "runtime": 11, "gpu": 4},
    "original": {"threads": 2, "mem_mb": 2222, "runtime": 22, "gpu": 1},
    "decompose": {"threads": 4, "mem_mb": 4444, "gpu": 2},  # runtime from default
    "collect_vectors": {"threads": 2, "mem_mb": 3333, "runtime": 33},  # no gpu key: default's must not leak in
}


def planned_job_resources(output: str) -> list[tuple[str, int, dict[str, str]]]:
    """(rule, threads, resources) of every job in a dry run's listing that runs a command."""
    jobs = []
    for block in re.split(r"\n(?=\[[^\n]*\]\n(?:local)?rule )", output):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        command = re.search(r"^Shell command: (.*)$", block, re.M)
        if rule is None or command is None or command.group(1) == "None":
            continue
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)  # printed only when above one
        listed = re.search(r"^\s+resources: (.*)$", block, re.M)
        resources = dict(item.split("=", 1) for item in listed.group(1).split(", ")) if listed else {}
        jobs.append((rule.group(1), int(threads.group(1)) if threads else 1, resources))
    return jobs


def expected(rule: str, resources: dict) -> dict:
    return {**resources["default"], **resources.get(rule, {})}


def dry_run(workdir, *args):
    config = load_config("smoke.yaml")
    config["resources"] = RESOURCES
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "-n", "--cores", "16", "--configfile", str(workdir / "config.yaml"), *args)
    assert result.returncode == 0, result.stdout[-3000:]
    jobs = planned_job_resources(result.stdout)
    assert set(planned_jobs(result.stdout)) - {"all"} == {rule for rule, _, _ in jobs}, result.stdout[-3000:]
    return jobs


def test_every_rule_takes_threads_memory_runtime_from_the_config_and_only_model_rules_a_gpu(workdir):
    jobs = dry_run(workdir)
    rules = {rule for rule, _, _ in jobs}
    assert {"original", "decompose", "optimize", "transfer"} <= rules
    assert rules - GPU_RULES, "no CPU-only rule planned"
    for rule, threads, resources in jobs:
        want = expected(rule, RESOURCES)
        assert threads == want["threads"], (rule, threads)
        assert int(resources.get("mem_mb", -1)) == want["mem_mb"], (rule, resources)
        assert int(resources.get("runtime", -1)) == want["runtime"], (rule, resources)
        if rule in GPU_RULES:
            assert int(resources.get("gpu", -1)) == want["gpu"], (rule, resources)
        else:
            assert "gpu" not in resources, f"CPU-only rule {rule} declares gpu: {resources}"


def test_a_changed_config_value_reaches_the_jobs(workdir):
    jobs = dry_run(workdir, "--config", 'resources={"original": {"mem_mb": 7777, "gpu": 3}, '
                                        '"default": {"runtime": 99}}')
    changed = {**RESOURCES, "original": {**RESOURCES["original"], "mem_mb": 7777, "gpu": 3},
               "default": {**RESOURCES["default"], "runtime": 99}}
    seen = {}
    for rule, _, resources in jobs:
        seen[rule] = (int(resources["mem_mb"]), int(resources["runtime"]), resources.get("gpu"))
    assert seen["original"] == (7777, 22, "3")
    assert seen["decompose"] == (4444, 99, "2")  # its runtime falls back to the changed default
    for rule, (mem_mb, runtime, _) in seen.items():
        want = expected(rule, changed)
        assert (mem_mb, runtime) == (want["mem_mb"], want["runtime"]), rule


def test_gpu_yaml_layered_on_a_config_gives_each_model_rule_one_gpu_and_keeps_its_other_resources(workdir):
    """README, "Workstation GPUs": --configfile <config> config/gpu.yaml merges key by key."""
    gpu_layer = load_config("gpu.yaml")["resources"]
    assert set(gpu_layer) == GPU_RULES
    jobs = dry_run(workdir, str(REPO / "config" / "gpu.yaml"))  # a second file after dry_run's --configfile
    layered = {**RESOURCES, **{rule: {**RESOURCES.get(rule, {}), "gpu": 1} for rule in GPU_RULES}}
    for rule, threads, resources in jobs:
        want = expected(rule, layered)
        assert (threads, int(resources["mem_mb"]), int(resources["runtime"])) == \
            (want["threads"], want["mem_mb"], want["runtime"]), (rule, resources)
        assert resources.get("gpu") == ("1" if rule in GPU_RULES else None), (rule, resources)
