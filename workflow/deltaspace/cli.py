"""`deltaspace <command>`: every rule's job as a plain command, so a stage can be rerun or debugged without
Snakemake (`snakemake -n -p <target>` prints a job's exact command).

One table, COMMANDS: a command has the name of the rule that runs it and names the function it calls; the
function's parameters are the command's options (`--name`), each read by the kind the table gives it. Torch
and the stage modules are imported only when their command runs.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from .paths import (Artifact, Decomposition, Figures, Files, Landscape, OptimizeRun, OriginalRun, PeftAdapter,
                    ResourceTable, ResultTables, TaskData, Vectors)


def _json(text: str):
    """A JSON value, or @path to a JSON file."""
    try:
        return json.loads(Path(text[1:]).read_text() if text.startswith("@") else text)
    except (json.JSONDecodeError, OSError) as err:
        raise argparse.ArgumentTypeError(f"expected JSON or @file.json ({err})") from err


def _pairs(items: list[str], what: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected {what}, got {item!r}")
        pairs.append((key, value))
    return pairs


def _files(cls: type[Files]):
    """FIELD=PATH pairs -> the stage's Files (every field given; what the rules pass), or one FOLDER -> the files
    under their standard names there (for a hand-typed command)."""
    def read(items: list[str]) -> Files:
        if len(items) == 1 and "=" not in items[0]:
            return cls.at(Path(items[0]))
        given = dict(_pairs(items, "FIELD=PATH"))
        names = [f.name for f in fields(cls)]
        if sorted(given) != sorted(names):
            raise ValueError(f"{cls.__name__} needs exactly {', '.join(f'{n}=PATH' for n in names)}; got {sorted(given)}")
        return cls(**{k: Path(v) for k, v in given.items()})
    return read


def _files_by_key(cls: type[Files]):
    """KEY.FIELD=PATH pairs -> {key: the stage's Files} (a task's data, a DET's run), or KEY=FOLDER pairs."""
    def read(items: list[str]) -> dict[str, Files]:
        grouped: dict[str, list[str]] = {}
        for key_field, path in _pairs(items, "KEY.FIELD=PATH or KEY=FOLDER"):
            key, dot, name = key_field.rpartition(".")
            grouped.setdefault(key if dot else name, []).append(f"{name}={path}" if dot else path)
        return {key: _files(cls)(group) for key, group in grouped.items()}
    return read


# How an option's text becomes the function's argument: (argparse nargs, converter of the value(s), help).
KINDS = {
    "text": (None, str, "text"),
    "int": (None, int, "an integer"),
    "json": (None, _json, "JSON, or @file.json"),
    "path": (None, Path, "a path"),
    "paths": ("*", lambda items: [Path(p) for p in items], "PATH ..."),
    "map": ("+", lambda items: {k: Path(v) for k, v in _pairs(items, "KEY=PATH")}, "KEY=PATH ..."),
    "pairs": ("+", lambda items: [(k, Path(v)) for k, v in _pairs(items, "KEY=PATH")], "KEY=PATH ... (keys may repeat)"),
}


@dataclass(frozen=True)
class Command:
    target: str  # "module:function" in the package
    help: str
    kinds: dict = field(default_factory=dict)  # parameter -> a KINDS name, a Files class, or ("by_key", Files class)

    def function(self):
        module, name = self.target.split(":")
        return getattr(importlib.import_module(f"deltaspace.{module}"), name)

    def describe(self, parameter: str) -> str:
        kind = self.kinds.get(parameter, "text")
        if isinstance(kind, tuple):
            return f"KEY.FIELD=PATH ... ({kind[1].__name__} per key: {', '.join(f.name for f in fields(kind[1]))}) or KEY=FOLDER ..."
        if isinstance(kind, type):
            return f"FIELD=PATH ... ({kind.__name__}: {', '.join(f.name for f in fields(kind))}) or one FOLDER"
        return KINDS[kind][2]

    def reader(self, parameter: str):
        kind = self.kinds.get(parameter, "text")
        if isinstance(kind, tuple):
            return "+", _files_by_key(kind[1])
        if isinstance(kind, type):
            return "+", _files(kind)
        return KINDS[kind][:2]


MODEL_JOB = {"seed": "int", "spec": "json", "threads": "int"}
COMMANDS = {
    "prepare_task": Command("tasks.prepare:prepare_task_job", "sample seeded train/dev/test splits of one task",
                            {"spec": "json", "out": TaskData}),
    "plant_tasks": Command("planted:plant_tasks", "the positive control's tasks: real texts labelled by a planted teacher",
                           {"spec": "json", "out": "map", "info": "path", "basis": "path",
                            "threads": "int"}),
    "convert_backbone": Command("convert_backbone:convert_backbone",
                                "de-quantise a GGUF backbone once into a safetensors folder",
                                {"gguf": "text", "out": "path"}),
    "overlap": Command("overlap:overlap", "refuse unseen tasks that share texts with the subspace's train tasks",
                       {"data": ("by_key", TaskData), "train_tasks": "json", "unseen_tasks": "json",
                        "max_overlap": "int", "out": "path"}),
    "original": Command("original:train_det", "stage 1: train one DET on one task in its own space",
                        {**MODEL_JOB, "data": TaskData, "out": OriginalRun, "checkpoint": "path"}),
    "collect_vectors": Command("vectors:collect_vectors", "stack one DET's stage-1 deltas into a matrix",
                               {"delta_files": "paths", "out": Vectors}),
    "original_table": Command("tables:original_table", "the table of every stage-1 run's scores",
                              {"metrics_files": "paths", "out": "path"}),
    "decompose": Command("decompose:decompose", "stage 2: learn the shared subspace from every DET's deltas",
                         {**MODEL_JOB, "vectors": "map", "data": ("by_key", TaskData), "out": Decomposition,
                          "checkpoint": "path"}),
    "decompose_sweep": Command("decompose_sweep:decompose_sweep",
                               "stage 2 under several settings on one run's vectors: the table that chose them",
                               {**MODEL_JOB, "vectors": "map", "data": ("by_key", TaskData), "settings": "json",
                                "out": "path"}),
    "optimize": Command("optimize:optimize", "stage 3: train an intrinsic vector for one DET on one task",
                        {**MODEL_JOB, "decomposition": Decomposition, "data": TaskData, "out": OptimizeRun}),
    "transfer": Command("transfer:transfer", "decode each DET's stage-3 vector through every DET; test scores",
                        {**MODEL_JOB, "subspace_path": "path", "results": "map", "data": TaskData, "out": "path",
                          "predictions_out": "path"}),
    "result_tables": Command("tables:result_tables", "relative performance and transfer tables (CSV + markdown)",
                             {"results": "paths", "transfers": "paths", "original_csv": "path", "roles": "json",
                              "out": ResultTables}),
    "landscape": Command("landscape:landscape", "every DET on a grid over the plane through the DETs' points",
                         {**MODEL_JOB, "subspace_path": "path", "points_csv": "path", "original": ("by_key", OriginalRun),
                          "optimize": "map", "data": TaskData, "out": Landscape}),
    "landscape_table": Command("landscape:landscape_area_table", "the table of every landscape's area",
                               {"areas": "paths", "out": "path"}),
    "subspace_artifact": Command("artifact:write_artifact", "the learned subspace as one folder with a model card",
                                 {"subspace_path": "path", "out": Artifact, "points_path": "path",
                                  "metrics_path": "path"}),
    "export_peft": Command("artifact:export_optimize", "a stage-3 solution as a PEFT adapter folder",
                           {"intrinsic_path": "path", "subspace": "path", "out": PeftAdapter, "threads": "int"}),
    "export_original_peft": Command("export:export_original", "a stage-1 solution as a PEFT adapter folder",
                                    {"delta_path": "path", "out": PeftAdapter, "threads": "int"}),
    "figures": Command("figures:make_figures", "the report's figures (PNG and PDF)",
                       {"transfer_csv": "path", "relative_csv": "path", "intervals_csv": "path", "original_metrics": "paths",
                        "decompose_metrics": "path", "optimize_results": "paths", "out": Figures}),
    "resource_table": Command("resource_table:resource_table", "wall time and peak memory per stage",
                              {"benchmarks": "pairs", "out": ResourceTable}),
    "summary": Command("summary:write_summary", "results/summary.md: the headline tables, each row naming its files",
                       {"out": "path", "original_csv": "path", "relative_csv": "path", "intervals_csv": "path",
                        "transfer_csv": "path",
                        "transfer_runs": "paths", "resources_csv": "path", "landscape_csv": "path",
                        "decompose_metrics": "path"}),
}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_parser(name: str) -> argparse.ArgumentParser:
    """The options of one command: only its own module is imported (a data job never loads torch)."""
    command = COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"deltaspace {name}", description=f"{command.help} ({command.target})")
    for parameter in inspect.signature(command.function()).parameters.values():
        if parameter.name in ("log", "on_checkpoint"):
            continue
        nargs, _ = command.reader(parameter.name)
        required = parameter.default is inspect.Parameter.empty
        what = command.describe(parameter.name) + ("" if required else f" (default: {parameter.default})")
        parser.add_argument(f"--{parameter.name.replace('_', '-')}", dest=parameter.name, nargs=nargs,
                            required=required, help=what)
    return parser


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:{width}s}  {c.help}" for name, c in COMMANDS.items()]
    return "usage: deltaspace <command> [options]   (deltaspace <command> -h: its options)\n\ncommands:\n" + "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        _log(usage() if not argv or argv[0] in ("-h", "--help") else f"deltaspace: unknown command {argv[0]!r}\n{usage()}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    name, command = argv[0], COMMANDS[argv[0]]
    args = vars(build_parser(name).parse_args(argv[1:]))
    function = command.function()
    started = time.perf_counter()
    try:
        kwargs = {key: command.reader(key)[1](value) for key, value in args.items() if value is not None}
        if "log" in inspect.signature(function).parameters:
            kwargs["log"] = _log
        function(**kwargs)
    except (ValueError, FileNotFoundError, KeyError, argparse.ArgumentTypeError) as err:
        _log(f"deltaspace {name}: error: {err}")
        return 1
    _log(f"[{name}] done in {time.perf_counter() - started:.1f} s ({command.target})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
