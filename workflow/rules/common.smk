# Config validation, result paths, per-rule resources and the JSON specs the rules hand to the CLI.
import dataclasses
import functools
import itertools
import json
import os
import shlex
import string
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate
from snakemake_interface_executor_plugins.settings import DeploymentMethod


# The results layout lives in the package (torch-free); a conda-deployed run reads it from this checkout.
sys.path.insert(0, os.path.join(workflow.basedir, "workflow"))
from deltaspace import paths  # noqa: E402
from deltaspace.paths import (  # noqa: E402
    ARTIFACT, BENCHMARK_FILES, CONVERTED_BACKBONE, DATA, DECOMPOSE_CHECKPOINT, DECOMPOSITION, FIGURES_FILES, LANDSCAPE, LANDSCAPE_AREA,
    LOGS, OPTIMIZE, ORIGINAL, ORIGINAL_CHECKPOINT, ORIGINAL_TABLE, OVERLAP, PEFT, RESOURCES, RESULT_TABLES, SUMMARY,
    TRANSFER, TRANSFER_PREDICTIONS, VECTORS, PLANTED, PLANTED_INFO, PLANTED_BASIS,
)


# Task and DET names become path parts; seeds are plain integers.
wildcard_constraints:
    task="[A-Za-z0-9][A-Za-z0-9_-]*",
    det="[A-Za-z0-9][A-Za-z0-9_-]*",
    seed="[0-9]+",


TEMPLATE_FIELDS = {"input", "task"}


# ---- validation: the schema first (with its defaults), then what a schema cannot say --------------


def config_key(path):
    """'original.steps', 'seeds[0]', or 'the top level' for an error's location in the config."""
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


# Config keys of earlier versions: stages go by one name from config key to rule, module and results folder.
RENAMED_KEYS = {"stage1": "original", "subspace": "decompose", "stage3": "optimize"}
RENAMED_RULES = {"train_det": "original", "stage1_table": "original_table", "subspace_train": "optimize",
                 "subspace_tables": "result_tables"}


def check_renamed_keys(config):
    """An old config names the key that replaced each renamed one, instead of a bare 'not allowed'."""
    renamed = [(old, new) for old, new in RENAMED_KEYS.items() if old in config]
    renamed += [(f"resources.{old}", f"resources.{new}") for old, new in RENAMED_RULES.items()
                if old in (config.get("resources") or {})]
    if renamed:
        raise WorkflowError(
            "Invalid configuration: " + "; ".join(f"config key {old!r} is now {new!r}" for old, new in renamed)
            + " (each stage has one name from config key to rule, module and results folder); rename it in your config"
        )


def validate_config(config, schema):
    """Fill in the schema's defaults and check every key before any job runs."""
    read_back_command_line_scalars(config, workflow.config_settings.config or {})
    check_renamed_keys(config)
    try:
        validate(config, schema)
    except WorkflowError as err:
        cause = err.__context__
        detail = schema_error_message(cause) if hasattr(cause, "absolute_path") else str(err)
        raise WorkflowError(f"Invalid configuration: {detail}") from None
    check_det_specs(config, schema)
    check_input_template(config["backbone"]["input_template"])
    check_task_specs(config["tasks"])
    metric_table()  # a missing or malformed table stops planning, not a job
    check_crossfit_data(config["tasks"], config.get("crossfit_dir"))
    check_subspace_tasks()
    check_landscape_tasks()
    check_control()


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


def check_det_specs(config, schema):
    """Each DET's options against its method's declaration (deltaspace/dets/<method>/config.py), which the schema
    file leaves open so that a new DET touches only its own folder and the registry."""
    from deltaspace.config_schema import first_error

    error = first_error(config, os.path.join(workflow.basedir, schema))
    if error is not None:
        raise WorkflowError(f"Invalid configuration: {schema_error_message(error)}")


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


def metric_table_path(path):
    """A relative metric_table is read from the working directory, else from this checkout (where the paper's ships)."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    shipped = os.path.join(workflow.basedir, path)
    return shipped if os.path.exists(shipped) else path


@functools.cache
def metric_table():
    """task -> primary metric from the config's metric_table (deltaspace.metric_table); {} without one."""
    from deltaspace.metric_table import MetricTableError, read_metric_table

    if "metric_table" not in config:
        return {}
    try:
        from deltaspace.tasks.metrics import METRICS

        names = {name: metric.reference_name for name, metric in METRICS.items()}
    except ImportError:  # conda-deployed jobs (--use-conda): each prepare_task job checks its metric's name
        names = None
    try:
        return read_metric_table(metric_table_path(config["metric_table"]), names)
    except MetricTableError as err:
        raise WorkflowError(f"Invalid configuration: config key 'metric_table': {err}") from None


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
    from deltaspace.metric_table import with_table_metric

    spec = {
        # The table's metric travels in the task's entry: a changed metric reruns only that task's preparation.
        "task": with_table_metric(wildcards.task, config["tasks"][wildcards.task], metric_table()),
        "sizes": config["split_sizes"],
        "seed": config["data_seed"],
        "wheels_dir": config["wheels_dir"],
    }
    # Only CrossFit tasks read it, so setting it leaves every other task's job (and its outputs) as it was.
    if spec["task"]["source"] == "crossfit" and "crossfit_dir" in config:
        spec["crossfit_dir"] = config["crossfit_dir"]
    return as_json(spec)


def task_file_input(task):
    """A file task's data file (prepare_task's input); nothing for any other source."""
    spec = config["tasks"][task]
    return [spec["path"]] if spec["source"] == "file" else []


def planted_tasks():
    """The positive control's tasks: file tasks whose data is a planted file (PLANTED), in config order."""
    return [task for task, spec in config["tasks"].items()
            if spec["source"] == "file" and spec["path"] == PLANTED.format(task=task)]


def planted_files():
    return [PLANTED.format(task=task) for task in planted_tasks()]


def plant_spec(wildcards):
    control = config["control"]
    return as_json({**common_spec(), "dets": {control["det"]: config["dets"][control["det"]]}, "control": control,
                    "wheels_dir": config["wheels_dir"]})


def gguf_backbone():
    """The configured backbone's GGUF file (convert_backbone's input), or None for any other backbone."""
    from deltaspace.convert_backbone import is_gguf

    name = config["backbone"]["name_or_path"]
    return name if is_gguf(name) else None


def backbone_spec():
    """The backbone section every model job gets: a GGUF backbone is read from its converted folder."""
    return {**config["backbone"], "name_or_path": CONVERTED_BACKBONE} if gguf_backbone() else config["backbone"]


def backbone_input(wildcards=None):
    """A model rule's input: the converted folder of a GGUF backbone, nothing for any other."""
    return [CONVERTED_BACKBONE] if gguf_backbone() else []


def original_spec(wildcards):
    return as_json(
        {
            "backbone": backbone_spec(),
            "det": config["dets"][wildcards.det],
            "original": config["original"],
            "init_seed": config["init_seed"],
            "precision": config["precision"],
            "device": config["device"],
        }
    )


def each(pattern, **values):
    """A pattern (a path, or a stage's Files) filled in for every combination of the given values (lists)."""
    keys = list(values)
    combos = [dict(zip(keys, combo)) for combo in itertools.product(*(values[k] for k in keys))]
    return [pattern.format(**c) if isinstance(pattern, str) else pattern.formatted(**c) for c in combos]


def original_runs(det=None, tasks=None):
    """OriginalRun files, for one DET or for all, of the given tasks or all, in config order."""
    return each(ORIGINAL, det=det_names() if det is None else [det], task=task_names() if tasks is None else tasks,
                seed=config["seeds"])


def decompose_train_tasks():
    return list(config["decompose"]["train_tasks"])


def guarded_tasks():
    """What the leakage guard reads: the subspace's train tasks and the tasks it must not have seen."""
    return decompose_train_tasks() + list(config["decompose"]["unseen_tasks"])


def task_roles():
    """seen: the subspace was learned from it; unseen (multi-task) or target (single-task): it was not."""
    other = "unseen" if config["decompose"]["setting"] == "multi" else "target"
    roles = {task: other for task in config["decompose"]["unseen_tasks"]}
    if config["decompose"]["optimize_seen"]:
        roles.update({task: "seen" for task in decompose_train_tasks()})
    return roles


def check_subspace_tasks():
    """The decomposition's task lists must name configured tasks and must not overlap."""
    known = set(task_names())
    sub = config["decompose"]
    for key in ("train_tasks", "unseen_tasks"):
        unknown = sorted(set(sub[key]) - known)
        if unknown:
            raise WorkflowError(
                f"Invalid configuration: config key 'decompose.{key}' names task(s) {unknown} that are not under 'tasks'"
            )
    both = sorted(set(sub["train_tasks"]) & set(sub["unseen_tasks"]))
    if both:
        raise WorkflowError(
            f"Invalid configuration: config keys 'decompose.train_tasks' and 'decompose.unseen_tasks' share {both}; "
            "a task the subspace is learned from cannot be unseen"
        )


def check_control():
    """Planted tasks need the control section, and its teacher must be a configured DET."""
    planted = planted_tasks()
    if planted and "control" not in config:
        raise WorkflowError(
            f"Invalid configuration: task(s) {planted} read planted files ({PLANTED}) but the config has no "
            "'control' section to plant them (see config/control.yaml)"
        )
    if "control" in config and config["control"]["det"] not in config["dets"]:
        raise WorkflowError(
            f"Invalid configuration: config key 'control.det' is {config['control']['det']!r}, not a DET under "
            f"'dets' ({', '.join(det_names())})"
        )


def check_landscape_tasks():
    """A landscape needs the task's points: a train task has them in points.csv, an unseen one from stage 3."""
    without_points = [t for t in landscape_tasks() if t not in decompose_train_tasks() and t not in task_roles()]
    if without_points:
        raise WorkflowError(
            f"Invalid configuration: config key 'landscape.tasks' names task(s) {without_points} that are neither in "
            "decompose.train_tasks nor in decompose.unseen_tasks, so they have no points in the subspace"
        )


def optimize_runs(det=None, task=None, seed=None):
    """OptimizeRun files of every task with a role, DET and seed (or of the one given)."""
    return each(OPTIMIZE, task=[task] if task else list(task_roles()), det=[det] if det else det_names(),
                seed=[seed] if seed else config["seeds"])


def transfer_runs():
    return each(TRANSFER, task=list(task_roles()), seed=config["seeds"])


def benchmark_records():
    """(rule, benchmark file) of every benchmarked job, stage by stage: what resource_table sums."""
    seeds, dets, roles = config["seeds"], det_names(), list(task_roles())
    jobs = {
        "original": each(BENCHMARK_FILES["original"], det=dets, task=task_names(), seed=seeds),
        "decompose": [BENCHMARK_FILES["decompose"]],
        "optimize": each(BENCHMARK_FILES["optimize"], task=roles, det=dets, seed=seeds),
        "transfer": each(BENCHMARK_FILES["transfer"], task=roles, seed=seeds),
        "landscape": each(BENCHMARK_FILES["landscape"], task=landscape_tasks(), seed=seeds),
    }
    return [(rule, path) for rule, files in jobs.items() for path in files]


def peft_exports():
    """A PEFT adapter per stage-3 solution of each DET whose method PEFT implements (deltaspace.export)."""
    from deltaspace.export import PEFT_METHODS

    dets = [det for det in det_names() if config["dets"][det]["method"] in PEFT_METHODS]
    return each(PEFT, task=list(task_roles()), det=dets, seed=config["seeds"])


def common_spec():
    return {"backbone": backbone_spec(), **{key: config[key] for key in ("init_seed", "precision", "device")}}


def decompose_spec(wildcards):
    # Only what stage 2 reads: choosing other stage-3 tasks must not retrain the subspace.
    settings = {k: v for k, v in config["decompose"].items() if k not in ("setting", "unseen_tasks", "optimize_seen",
                                                                            "max_overlap")}
    return as_json({**common_spec(), "dets": config["dets"], "decompose": settings, "seed": config["decompose"]["seed"]})


def optimize_spec(wildcards):
    return as_json({**common_spec(), "dets": {wildcards.det: config["dets"][wildcards.det]},
                    "optimize": config["optimize"]})


def transfer_spec(wildcards):
    return as_json({**common_spec(), "dets": config["dets"], "optimize": config["optimize"]})


def landscape_tasks():
    """landscape.tasks, or by default the first unseen/target task (else the first train task)."""
    return list(config["landscape"]["tasks"] or (config["decompose"]["unseen_tasks"] or decompose_train_tasks())[:1])


def landscape_runs():
    return each(LANDSCAPE, task=landscape_tasks(), seed=config["seeds"])


def optimize_files_by_det(wildcards, field):
    """{det: that DET's optimize file `field` (result, intrinsic)} of the job's task and seed."""
    return {det: getattr(run, field) for det in det_names() for run in optimize_runs(det, wildcards.task, wildcards.seed)}


def landscape_optimize(wildcards):
    """The task's stage-3 vectors: its points if the subspace never saw it, else marks on its maps."""
    return optimize_files_by_det(wildcards, "intrinsic") if wildcards.task in task_roles() else {}


def landscape_original(wildcards):
    """Each DET's stage-1 run of the task: its own-space score on the grid's examples."""
    return {det: ORIGINAL.formatted(task=wildcards.task, det=det, seed=wildcards.seed) for det in det_names()}


def landscape_spec(wildcards):
    # Which tasks get a landscape is not part of any one landscape's settings.
    settings = {k: v for k, v in config["landscape"].items() if k != "tasks"}
    return as_json({**common_spec(), "dets": config["dets"], "landscape": settings})


def named(files, prefix=""):
    """A stage's Files as a rule's named inputs or outputs (prefix: to tell several stages' files apart)."""
    return {prefix + f.name: getattr(files, f.name) for f in dataclasses.fields(files)}


def files_option(name, files_by_key):
    """--name FIELD=PATH ... for one stage's Files, or KEY.FIELD=PATH ... for {key: Files} (tasks, DETs)."""
    groups = files_by_key.items() if isinstance(files_by_key, dict) else [("", files_by_key)]
    pairs = [f"{key + '.' if key else ''}{f.name}={getattr(group, f.name)}"
             for key, group in groups for f in dataclasses.fields(group)]
    return f"--{name} " + " ".join(shlex.quote(p) for p in pairs)


def io_files(cls, io, prefix=""):
    """The Files a rule declared with named(...), read back from its input or output."""
    return cls(**{f.name: io[prefix + f.name] for f in dataclasses.fields(cls)})


def pairs_option(name, mapping):
    """--name KEY=PATH ... for a job's command line."""
    return f"--{name} " + " ".join(shlex.quote(f"{key}={path}") for key, path in mapping.items())


def final_outputs():
    # OVERLAP here too, not only as the stages' ancient input: when a changed task list reruns the guard,
    # snakemake 9.27 otherwise plans the guard alone and stops (the other jobs wait for the next run).
    return [
        OVERLAP, SUMMARY, FIGURES_FILES.transfer_matrix, RESULT_TABLES.relative, RESULT_TABLES.transfer,
        ORIGINAL_TABLE,
        *[path for det in det_names() for path in VECTORS.formatted(det=det).paths()],
        ARTIFACT.card, *[run.config for run in peft_exports()], LANDSCAPE_AREA,
    ]
