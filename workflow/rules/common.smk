# Config validation, result paths, per-rule resources and the JSON specs the rules hand to the CLI.
import json
import os
import shlex
import string
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate
from snakemake_interface_executor_plugins.settings import DeploymentMethod


# Task and DET names become path parts; seeds are plain integers.
wildcard_constraints:
    task="[A-Za-z0-9][A-Za-z0-9_-]*",
    det="[A-Za-z0-9][A-Za-z0-9_-]*",
    seed="[0-9]+",


DATA_DIR = "results/data/{task}"
STAGE1_RUN = "results/stage1/{task}/{det}/seed{seed}"
STAGE1_CHECKPOINTS = "results/checkpoints/stage1/{task}/{det}/seed{seed}"
VECTORS_DIR = "results/vectors"
SUBSPACE_DIR = "results/subspace"
SUBSPACE_CHECKPOINTS = "results/checkpoints/subspace"
STAGE3_RUN = "results/stage3/{task}/{det}/seed{seed}"
TRANSFER_RUN = "results/transfer/{task}/seed{seed}.csv"
TABLES_DIR = "results/tables"
LOGS_DIR = "results/logs"
FIGURES_DIR = "results/figures"
SUMMARY = "results/summary.md"
LANDSCAPE_AREA = "results/tables/landscape_area.csv"
LANDSCAPE_RUN = "results/landscape/{task}/seed{seed}"
EXPORT_SUBSPACE = "results/export/subspace"
EXPORT_PEFT_RUN = "results/export/peft/{task}/{det}/seed{seed}"
# Snakemake's per-job benchmark records (wall time, peak memory) of every heavy rule, summed by resource_table.
BENCHMARKS = {
    "train_det": "results/benchmarks/train_det/{task}/{det}/seed{seed}.tsv",
    "decompose": "results/benchmarks/decompose/subspace.tsv",
    "subspace_train": "results/benchmarks/subspace_train/{task}/{det}/seed{seed}.tsv",
    "transfer": "results/benchmarks/transfer/{task}/seed{seed}.tsv",
    "landscape": "results/benchmarks/landscape/{task}/seed{seed}.tsv",
}
TEMPLATE_FIELDS = {"input", "task"}


# ---- validation: the schema first (with its defaults), then what a schema cannot say --------------


def config_key(path):
    """'stage1.steps', 'seeds[0]', or 'the top level' for an error's location in the config."""
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else f".{part}"
    return key.lstrip(".") or "the top level"


def schema_error_message(error):
    """One line that names the config key, what is wrong and what is allowed there."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        where = config_key(path)
        return (
            f"config key {config_key(path + unknown[:1])!r} is not allowed; "
            f"allowed keys in {where}: {', '.join(allowed)}"
        )
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [key for key in error.validator_value if key not in error.instance]
        return f"config key {config_key(path + missing[:1])!r} is required but missing"
    message = f"config key {config_key(path)!r}: {error.message}"
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    return f"{message} ({description})" if description else message


def scalar_from_text(text):
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def read_back_command_line_scalars(config, given):
    """--config parses nested values as text (YAML BaseLoader); read numbers and booleans back as such."""
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            read_back_command_line_scalars(config[key], value)
        elif isinstance(value, list) and config.get(key) == value:
            config[key] = [scalar_from_text(v) if isinstance(v, str) else v for v in value]
        elif isinstance(value, str) and config.get(key) == value:
            config[key] = scalar_from_text(value)


def validate_config(config, schema):
    """Fill in the schema's defaults and check every key before any job runs."""
    read_back_command_line_scalars(config, workflow.config_settings.config or {})
    try:
        validate(config, schema)
    except WorkflowError as err:
        cause = err.__context__
        detail = schema_error_message(cause) if hasattr(cause, "absolute_path") else str(err)
        raise WorkflowError(f"Invalid configuration: {detail}") from None
    check_input_template(config["backbone"]["input_template"])
    check_task_specs(config["tasks"])
    check_crossfit_data(config["tasks"], config.get("crossfit_dir"))
    check_subspace_tasks()
    check_landscape_tasks()


def check_input_template(template):
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise WorkflowError(f"Invalid configuration: config key 'backbone.input_template': {err}") from None
    unknown = sorted(fields - TEMPLATE_FIELDS)
    if unknown:
        raise WorkflowError(
            f"Invalid configuration: config key 'backbone.input_template' uses {{{unknown[0]}}}; "
            f"allowed placeholders: {{input}}, {{task}} (write {{{{ }}}} for a literal brace)"
        )


def check_task_specs(tasks):
    """The tasks module owns what each source accepts (packaged names, metrics); ask it now, not mid-run."""
    try:
        from deltaspace.tasks import TaskDataError, validate_spec
    except ImportError:  # conda-deployed jobs (--use-conda): each prepare_task job checks its own spec
        return
    for name, spec in tasks.items():
        try:
            validate_spec(name, spec)
        except TaskDataError as err:
            raise WorkflowError(f"Invalid configuration: config key 'tasks.{name}': {err}") from None


def check_crossfit_data(tasks, crossfit_dir):
    """Every CrossFit task's files must exist before any job runs: name the missing ones now, not hours in."""
    try:
        from deltaspace.tasks import TaskDataError, missing_crossfit_files, resolve_crossfit_path
    except ImportError:  # conda-deployed jobs (--use-conda): each prepare_task job checks its own files
        return
    missing = {}
    for name, spec in tasks.items():
        if spec["source"] != "crossfit":
            continue
        try:
            paths = missing_crossfit_files(resolve_crossfit_path(name, spec, crossfit_dir))
        except TaskDataError as err:
            raise WorkflowError(f"Invalid configuration: config key 'tasks.{name}': {err}") from None
        if paths:
            missing[name] = paths
    if not missing:
        return
    how = "give the data's folder with --config crossfit_dir=/path/to/crossfit/data (README: \"The paper's setting\")"
    if crossfit_dir is not None and not os.path.isdir(crossfit_dir):
        raise WorkflowError(
            f"Invalid configuration: config key 'crossfit_dir': folder {crossfit_dir!r} does not exist (in "
            f"{os.getcwd()}), so {len(missing)} CrossFit task(s) have no data; {how}"
        )
    shown = [f"task {name!r}: {', '.join(map(str, paths))}" for name, paths in list(missing.items())[:5]]
    more = f"; and {len(missing) - 5} more task(s)" if len(missing) > 5 else ""
    where = f" under crossfit_dir {crossfit_dir!r}" if crossfit_dir is not None else ""
    raise WorkflowError(
        f"Invalid configuration: CrossFit data missing for {len(missing)} task(s){where}: not found {'; '.join(shown)}"
        f"{more}. Each task needs a folder holding <prefix>_train.tsv, <prefix>_dev.tsv and <prefix>_test.tsv "
        f"(prefix: the folder's name unless the task sets 'prefix'); {how}"
    )


# ---- how jobs run the package -------------------------------------------------------------------


def use_conda():
    return DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method


def job_shell_prefix():
    """Jobs import the package from this checkout; without conda they also use the python running snakemake."""
    package_root = shlex.quote(os.path.join(workflow.basedir, "workflow"))
    # Doubled braces: shell.prefix formats its text like a shell command.
    prefix = f"set -euo pipefail; export PYTHONPATH={package_root}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    if not use_conda():
        prefix += f"export PATH={shlex.quote(os.path.dirname(sys.executable))}:$PATH; "
    return prefix


# ---- names, resources and specs ------------------------------------------------------------------


def task_names():
    return list(config["tasks"])


def det_names():
    return list(config["dets"])


def rule_resource(rule, key):
    """A rule's own setting, else resources.default: the numbers live only in the config."""
    return config["resources"].get(rule, {}).get(key, config["resources"]["default"][key])


def as_json(value):
    """Sorted keys: the same settings always give the same text, so only real changes trigger reruns."""
    # Round trip first: JSON turns YAML's int/bool mapping keys (labels: {1: ..}) into text, which then sorts.
    return json.dumps(json.loads(json.dumps(value)), sort_keys=True)


def prepare_task_spec(wildcards):
    spec = {
        "task": config["tasks"][wildcards.task],
        "sizes": config["split_sizes"],
        "seed": config["data_seed"],
        "wheels_dir": config["wheels_dir"],
    }
    # Only CrossFit tasks read it, so setting it leaves every other task's job (and its outputs) as it was.
    if spec["task"]["source"] == "crossfit" and "crossfit_dir" in config:
        spec["crossfit_dir"] = config["crossfit_dir"]
    return as_json(spec)


def train_det_spec(wildcards):
    return as_json(
        {
            "backbone": config["backbone"],
            "det": config["dets"][wildcards.det],
            "training": config["stage1"],
            "init_seed": config["init_seed"],
            "precision": config["precision"],
            "device": config["device"],
        }
    )


def stage1_runs(det=None, tasks=None):
    """Stage-1 output folders, for one DET or for all, of the given tasks or all, in config order."""
    dets = det_names() if det is None else [det]
    return [
        STAGE1_RUN.format(task=task, det=d, seed=seed)
        for d in dets
        for task in (task_names() if tasks is None else tasks)
        for seed in config["seeds"]
    ]


def subspace_train_tasks():
    return list(config["subspace"]["train_tasks"])


def task_roles():
    """seen: the subspace was learned from it; unseen (multi-task) or target (single-task): it was not."""
    other = "unseen" if config["subspace"]["setting"] == "multi" else "target"
    roles = {task: other for task in config["subspace"]["unseen_tasks"]}
    if config["subspace"]["optimize_seen"]:
        roles.update({task: "seen" for task in subspace_train_tasks()})
    return roles


def check_subspace_tasks():
    """Stage 2 and 3 task lists must name configured tasks and must not overlap."""
    known = set(task_names())
    sub = config["subspace"]
    for key in ("train_tasks", "unseen_tasks"):
        unknown = sorted(set(sub[key]) - known)
        if unknown:
            raise WorkflowError(
                f"Invalid configuration: config key 'subspace.{key}' names task(s) {unknown} that are not under 'tasks'"
            )
    both = sorted(set(sub["train_tasks"]) & set(sub["unseen_tasks"]))
    if both:
        raise WorkflowError(
            f"Invalid configuration: config keys 'subspace.train_tasks' and 'subspace.unseen_tasks' share {both}; "
            "a task the subspace is learned from cannot be unseen"
        )


def check_landscape_tasks():
    """A landscape needs the task's points: a train task has them in points.csv, an unseen one from stage 3."""
    without_points = [t for t in landscape_tasks() if t not in subspace_train_tasks() and t not in task_roles()]
    if without_points:
        raise WorkflowError(
            f"Invalid configuration: config key 'landscape.tasks' names task(s) {without_points} that are neither in "
            "subspace.train_tasks nor in subspace.unseen_tasks, so they have no points in the subspace"
        )


def stage3_runs(det=None, task=None, seed=None):
    return [
        STAGE3_RUN.format(task=t, det=d, seed=s)
        for t in ([task] if task else task_roles())
        for d in ([det] if det else det_names())
        for s in ([seed] if seed else config["seeds"])
    ]


def transfer_runs():
    return [TRANSFER_RUN.format(task=t, seed=s) for t in task_roles() for s in config["seeds"]]


def benchmark_records():
    """(rule, benchmark file) of every benchmarked job, stage by stage: what resource_table sums."""
    seeds = config["seeds"]
    jobs = {
        "train_det": [dict(task=t, det=d, seed=s) for d in det_names() for t in task_names() for s in seeds],
        "decompose": [{}],
        "subspace_train": [dict(task=t, det=d, seed=s) for t in task_roles() for d in det_names() for s in seeds],
        "transfer": [dict(task=t, seed=s) for t in task_roles() for s in seeds],
        "landscape": [dict(task=t, seed=s) for t in landscape_tasks() for s in seeds],  # landscape.smk
    }
    return [(rule, BENCHMARKS[rule].format(**w)) for rule, wildcards in jobs.items() for w in wildcards]


def peft_exports():
    """A PEFT adapter folder per stage-3 solution of each DET whose method PEFT implements (deltaspace.export)."""
    try:
        from deltaspace.export import PEFT_METHODS
    except ImportError:  # snakemake runs outside the package's environment (--use-conda): read this checkout's
        sys.path.append(os.path.join(workflow.basedir, "workflow"))
        from deltaspace.export import PEFT_METHODS
    dets = [det for det in det_names() if config["dets"][det]["method"] in PEFT_METHODS]
    return [EXPORT_PEFT_RUN.format(task=t, det=d, seed=s) for t in task_roles() for d in dets for s in config["seeds"]]


def common_spec():
    return {key: config[key] for key in ("backbone", "init_seed", "precision", "device")}


def decompose_spec(wildcards):
    # Only what stage 2 reads: choosing other stage-3 tasks must not retrain the subspace.
    stage2 = {k: v for k, v in config["subspace"].items() if k not in ("setting", "unseen_tasks", "optimize_seen")}
    return as_json({**common_spec(), "dets": config["dets"], "subspace": stage2, "seed": config["subspace"]["seed"]})


def subspace_train_spec(wildcards):
    return as_json({**common_spec(), "dets": {wildcards.det: config["dets"][wildcards.det]},
                    "stage3": config["stage3"]})


def transfer_spec(wildcards):
    return as_json({**common_spec(), "dets": config["dets"], "stage3": config["stage3"]})


def landscape_tasks():
    """landscape.tasks, or by default the first unseen/target task (else the first train task)."""
    return list(config["landscape"]["tasks"] or (config["subspace"]["unseen_tasks"] or subspace_train_tasks())[:1])


def landscape_runs():
    return [LANDSCAPE_RUN.format(task=t, seed=s) for t in landscape_tasks() for s in config["seeds"]]


def landscape_stage3(wildcards):
    """The task's stage-3 vectors: its points if the subspace never saw it, else marks on its maps."""
    if wildcards.task not in task_roles():
        return []
    return [f"{run}/intrinsic.safetensors" for run in stage3_runs(task=wildcards.task, seed=wildcards.seed)]


def landscape_spec(wildcards):
    # Which tasks get a landscape is not part of any one landscape's settings.
    settings = {k: v for k, v in config["landscape"].items() if k != "tasks"}
    return as_json({**common_spec(), "dets": config["dets"], "landscape": settings})


def final_outputs():
    return [SUMMARY, f"{FIGURES_DIR}/transfer_matrix.png"] + [f"{TABLES_DIR}/{name}" for name in ("relative_performance.csv", "transfer.csv")] + [f"{TABLES_DIR}/stage1.csv"] + [
        f"{VECTORS_DIR}/{det}{suffix}" for det in det_names() for suffix in (".safetensors", "_index.csv")
    ] + [f"{EXPORT_SUBSPACE}/README.md"] + [f"{run}/adapter_config.json" for run in peft_exports()] + [LANDSCAPE_AREA]
