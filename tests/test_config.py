"""The config schema and checks: shipped configs validate; a wrong key, type or value fails before any job
runs, naming the key and what is allowed. Everything goes through snakemake, as a user would hit it."""
from __future__ import annotations

import copy
import re

import pytest
import yaml
from snakemake.utils import validate

from conftest import PAPER_PRESETS, REPO, load_config, planned_jobs, snakemake
from deltaspace.config_schema import first_error
from deltaspace.dets import METHODS

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA_TEXT = yaml.safe_load(SCHEMA.read_text())
# Lists the schema itself defines; the messages must show them as they are, whatever they grow to.
RULES_WITH_RESOURCES = ", ".join(sorted(SCHEMA_TEXT["properties"]["resources"]["properties"]))
DET_METHODS = list(METHODS)  # the registry's order (deltaspace.dets), which the generated DET schema follows


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_paper_presets_validate(name):
    """The paper's presets leave encoder-only and local-data keys to the schema's defaults."""
    config = load_config(name)
    validate(config, str(SCHEMA))
    assert first_error(config, SCHEMA) is None  # the DETs' options, against their declarations


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml", "single_task.yaml"])
def test_shipped_configs_validate(name):
    """Against the schema here; test_workflow's dry runs pass both through the workflow's own checks too."""
    config = load_config(name)
    validate(config, str(SCHEMA))
    assert first_error(config, SCHEMA) is None
    assert config == load_config(name), "a shipped config should be complete: no schema default fills it"


@pytest.mark.parametrize("path", sorted((REPO / "config").glob("*.yaml")), ids=lambda path: path.name)
def test_a_preset_run_in_its_own_folder_finds_the_checkouts_data_wheels(path):
    """A preset whose command runs it in its own folder (--directory runs/<name>, the README's and its header's)
    reads wheels_dir from there: it must lead back to the checkout's resources/wheels, where README step 1 puts
    them (a bare resources/wheels would look in runs/<name>/ and find nothing)."""
    config, folders = load_config(path.name), re.findall(r"--directory (runs/\w+)", path.read_text())
    if "wheels_dir" not in config:
        return
    for folder in folders or ["."]:
        assert ((REPO / folder / config["wheels_dir"]).resolve() == (REPO / "resources" / "wheels").resolve()), folder


def test_schema_defaults_are_the_embedded_default():
    """A config giving only tasks and DETs gets the embedded default's every other value from the schema."""
    default = load_config("config.yaml")
    minimal = {"tasks": default["tasks"], "dets": default["dets"]}
    validate(minimal, str(SCHEMA))
    default["resources"] = {"default": default["resources"]["default"]}  # per-rule entries have no defaults
    assert minimal == default


def with_change(path: str, value) -> dict:
    """The embedded default with one dotted key set (value None: removed)."""
    config = copy.deepcopy(load_config("config.yaml"))
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return config


BAD_CONFIGS = {
    "unknown key": (
        with_change("original.stpes", 3),
        "config key 'original.stpes' is not allowed; allowed keys in original: batch_size, eval_batch_size, "
        "eval_every, lr, optimizer, steps",
    ),
    "unknown top-level key": (
        with_change("stage2", {}),
        "config key 'stage2' is not allowed; allowed keys in the top level: backbone, control, crossfit_dir, data_seed, decompose",
    ),
    "a key of an earlier version": (
        with_change("stage3", {"steps": 3}),
        "config key 'stage3' is now 'optimize' (each stage has one name from config key to rule, module and results "
        "folder); rename it in your config",
    ),
    "a rule of an earlier version": (
        with_change("resources.train_det", {"threads": 2}),
        "config key 'resources.train_det' is now 'resources.original'",
    ),
    "wrong type": (
        with_change("original.steps", "ten"),
        "config key 'original.steps': 'ten' is not of type 'integer'",
    ),
    "negative steps": (
        with_change("original.steps", -1),
        "config key 'original.steps': -1 is less than the minimum of 1",
    ),
    "unknown DET method": (
        with_change("dets.lora.method", "lorra"),
        f"config key 'dets.lora.method': 'lorra' is not one of {DET_METHODS}",
    ),
    "option of another method": (
        with_change("dets.lora.bottleneck", 8),
        "config key 'dets.lora.bottleneck' is not allowed; allowed keys in dets.lora: alpha, expected_params, lr, "
        "method, rank, target_modules",
    ),
    "DET without method": (
        with_change("dets.lora.method", None),
        "config key 'dets.lora.method' is required but missing",
    ),
    "file task without path": (
        with_change("tasks.mine", {"source": "file", "format": "csv"}),
        "config key 'tasks.mine.path' is required but missing",
    ),
    "CrossFit task with no path and no crossfit_dir": (
        with_change("tasks.mine", {"source": "crossfit"}),
        "config key 'tasks.mine': task 'mine': source 'crossfit' needs key 'path', or a top-level 'crossfit_dir' "
        "holding a folder named 'mine'",
    ),
    "unknown packaged data set": (
        with_change("tasks.mine", {"source": "packaged", "name": "sst2"}),
        "config key 'tasks.mine': task 'mine': key 'name' 'sst2' is not a packaged task",
    ),
    "task name that is no path part": (
        with_change("tasks.my task", {"source": "packaged"}),
        "config key 'tasks': 'my task' does not match",
    ),
    "template placeholder": (
        with_change("backbone.input_template", "{task}: {text}"),
        "config key 'backbone.input_template' uses {text}; allowed placeholders: {input}, {task}",
    ),
    "resources of no rule": (
        with_change("resources.train", {"threads": 2}),
        f"config key 'resources.train' is not allowed; allowed keys in resources: {RULES_WITH_RESOURCES}",
    ),
    "no tasks": (with_change("tasks", None), "config key 'tasks' is required but missing"),
    "unseen task not configured": (
        with_change("decompose.unseen_tasks", ["trec", "imdb"]),
        "config key 'decompose.unseen_tasks' names task(s) ['imdb'] that are not under 'tasks'",
    ),
    "task both seen and unseen": (
        with_change("decompose.unseen_tasks", ["trec", "sms_spam"]),
        "config keys 'decompose.train_tasks' and 'decompose.unseen_tasks' share ['sms_spam']",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_fails_before_any_job_naming_the_key(workdir, case):
    config, message = BAD_CONFIGS[case]
    path = workdir / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--cores", "1", "--configfile", str(path))
    assert result.returncode != 0
    assert f"Invalid configuration: {message}" in result.stdout, result.stdout
    assert not (workdir / "results").exists()


def test_nested_command_line_values_are_read_as_numbers(workdir):
    """snakemake's --config hands nested values over as text; the workflow reads numbers back."""
    bad = snakemake(workdir, "--cores", "1", "--config", 'original={"steps": -1}')
    assert "config key 'original.steps': -1 is less than the minimum of 1" in bad.stdout, bad.stdout
    good = snakemake(workdir, "-n", "-p", "--config", 'original={"steps": 7}', "seeds=[1, 2]")
    assert good.returncode == 0, good.stdout
    assert '"steps": 7' in good.stdout
    default = load_config("config.yaml")
    assert planned_jobs(good.stdout)["original"] == len(default["tasks"]) * len(default["dets"]) * 2


def test_the_schemas_enums_are_the_codes_choices():
    """Where the code defines the allowed values, the schema offers exactly those (checked, not copied by hand)."""
    from deltaspace.hardware import PRECISIONS
    from deltaspace.optim import OPTIMIZERS
    from deltaspace.subspace import INITS, MIXING_SCHEMES

    schema = yaml.safe_load(SCHEMA.read_text())["properties"]
    assert schema["precision"]["enum"] == list(PRECISIONS)
    assert schema["decompose"]["properties"]["mixing"]["enum"] == list(MIXING_SCHEMES)
    assert schema["decompose"]["properties"]["init"]["enum"] == list(INITS)
    for section in ("original", "decompose", "optimize"):
        assert schema[section]["properties"]["optimizer"]["enum"] == list(OPTIMIZERS), section
