"""`deltaspace <command>`: every stage as a plain command, so a stage can be rerun or debugged without
Snakemake; the rules only map files to these arguments."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _spec(text: str) -> dict:
    """--spec takes a JSON object, or @path to a JSON file."""
    try:
        return json.loads(Path(text[1:]).read_text() if text.startswith("@") else text)
    except (json.JSONDecodeError, OSError) as err:
        raise argparse.ArgumentTypeError(f"--spec must be a JSON object or @file.json ({err})") from err


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_prepare_task(a) -> None:
    from .tasks import prepare_task

    s = a.spec
    summary = prepare_task(a.task, s["task"], s["sizes"], s["seed"], a.out_dir, wheels_dir=s.get("wheels_dir"),
                           crossfit_dir=s.get("crossfit_dir"))
    _log(f"[prepare_task] {a.task}: sizes {summary['sizes']} majority(test) {summary['majority_test_accuracy']:.4f}")


def cmd_train_det(a) -> None:
    from .stage1 import train_det

    train_det(a.task, a.det, a.seed, a.spec, a.data_dir, a.out_dir, a.checkpoint_dir, threads=a.threads, log=_log)


def cmd_collect_vectors(a) -> None:
    from .vectors import collect_vectors

    index = collect_vectors(a.det, a.runs, a.out_dir)
    _log(f"[collect_vectors] {a.det}: {len(index)} rows")


def cmd_stage1_table(a) -> None:
    from .tables import stage1_table

    table = stage1_table(a.runs, a.out)
    _log(f"[stage1_table] {len(table)} rows -> {a.out}")


def cmd_decompose(a) -> None:
    from .stage2 import decompose

    data_dirs = dict(item.split("=", 1) for item in a.data)
    decompose(a.spec, a.vectors_dir, data_dirs, a.out_dir, a.checkpoint_dir, threads=a.threads, log=_log)


def cmd_subspace_train(a) -> None:
    from .stage3 import subspace_train

    subspace_train(a.task, a.det, a.seed, a.spec, a.subspace, a.data_dir, a.out_dir, threads=a.threads, log=_log)


def cmd_transfer(a) -> None:
    from .transfer import transfer

    stage3_dirs = dict(item.split("=", 1) for item in a.runs)
    transfer(a.task, a.seed, a.spec, a.subspace, stage3_dirs, a.data_dir, a.out, threads=a.threads, log=_log)


def cmd_subspace_tables(a) -> None:
    from .tables import relative_performance_table, transfer_table

    roles = json.loads(a.roles)
    relative_performance_table(a.runs, a.stage1, roles, a.relative_out, a.relative_summary)
    transfer_table(a.transfers, a.stage1, a.transfer_out, a.transfer_summary)
    _log(f"[subspace_tables] -> {a.relative_out}, {a.transfer_out}")


def cmd_subspace_artifact(a) -> None:
    from .artifact import write_artifact

    write_artifact(a.subspace, a.out_dir, a.points, a.metrics)
    _log(f"[subspace_artifact] {a.subspace} -> {a.out_dir}")


def cmd_export_peft(a) -> None:
    from .hardware import configure_threads

    configure_threads(a.threads)
    if a.delta is not None:
        from .export import export_stage1

        export_stage1(a.delta, a.out_dir, backbone=a.backbone)
    else:
        from .artifact import export_stage3

        if a.subspace is None:
            raise ValueError("export-peft --intrinsic needs --subspace (the artifact folder or subspace.safetensors)")
        export_stage3(a.intrinsic, a.subspace, a.out_dir, backbone=a.backbone)
    _log(f"[export_peft] {a.delta or a.intrinsic} -> {a.out_dir}")


def cmd_figures(a) -> None:
    from .figures import make_figures

    paths = make_figures(a.transfer, a.relative, a.stage1_runs, a.stage2_metrics, a.stage3_runs, a.out_dir)
    _log(f"[figures] {len(paths)} files -> {a.out_dir}")


def cmd_resource_table(a) -> None:
    from .resources_table import resource_table

    benchmarks = [tuple(item.split("=", 1)) for item in a.benchmarks]
    table = resource_table(benchmarks, a.out, a.summary_out)
    _log(f"[resource_table] {int(table['jobs'].sum())} jobs of {len(table)} rules -> {a.out}")


def cmd_summary(a) -> None:
    from .summary import write_summary

    write_summary(a.out, a.stage1, a.relative, a.transfer, a.transfer_runs, a.resources, a.landscape_area)
    _log(f"[summary] -> {a.out}")


def cmd_landscape(a) -> None:
    from .landscape import landscape

    stage1 = dict(item.split("=", 1) for item in a.stage1)
    stage3 = dict(item.split("=", 1) for item in a.stage3)
    landscape(a.task, a.seed, a.spec, a.subspace, a.points, stage1, stage3, a.data_dir, a.out_dir,
              threads=a.threads, log=_log)


def cmd_landscape_table(a) -> None:
    from .landscape import landscape_area_table

    table = landscape_area_table(a.runs, a.out)
    _log(f"[landscape_table] {len(table)} rows -> {a.out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deltaspace", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare-task", help="sample seeded train/dev/test splits of one task")
    p.add_argument("--task", required=True)
    p.add_argument("--spec", type=_spec, required=True, help='{"task": {...}, "sizes": {...}, "seed": N, "wheels_dir": ..., "crossfit_dir": ...}')
    p.add_argument("--out-dir", type=Path, required=True)
    p.set_defaults(run=cmd_prepare_task)

    p = sub.add_parser("train-det", help="stage 1: train one DET on one task")
    p.add_argument("--task", required=True)
    p.add_argument("--det", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--spec", type=_spec, required=True,
                   help='{"backbone": {...}, "det": {...}, "training": {...}, "init_seed": N, "precision": ..., "device": ...}')
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--checkpoint-dir", type=Path, required=True)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(run=cmd_train_det)

    p = sub.add_parser("collect-vectors", help="stack one DET's stage-1 deltas into a matrix")
    p.add_argument("--det", required=True)
    p.add_argument("--runs", nargs="+", type=Path, required=True)
    p.add_argument("--out-dir", type=Path, required=True)
    p.set_defaults(run=cmd_collect_vectors)

    p = sub.add_parser("stage1-table", help="results/tables/stage1.csv from stage-1 metrics")
    p.add_argument("--runs", nargs="+", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(run=cmd_stage1_table)

    p = sub.add_parser("decompose", help="stage 2: learn the shared subspace from every DET's stage-1 deltas")
    p.add_argument("--spec", type=_spec, required=True,
                   help='{"backbone", "dets", "init_seed", "subspace": {...}, "precision", "device", "seed"}')
    p.add_argument("--vectors-dir", type=Path, required=True)
    p.add_argument("--data", nargs="+", required=True, metavar="TASK=DIR", help="prepared data folder of each training task")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--checkpoint-dir", type=Path, required=True)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(run=cmd_decompose)

    p = sub.add_parser("subspace-train", help="stage 3: train an intrinsic vector for one DET on one task")
    p.add_argument("--task", required=True)
    p.add_argument("--det", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--spec", type=_spec, required=True, help='{"backbone", "dets", "init_seed", "stage3": {...}, ...}')
    p.add_argument("--subspace", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(run=cmd_subspace_train)

    p = sub.add_parser("transfer", help="decode each DET's stage-3 vector through every other DET; test scores")
    p.add_argument("--task", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--spec", type=_spec, required=True)
    p.add_argument("--subspace", type=Path, required=True)
    p.add_argument("--runs", nargs="+", required=True, metavar="DET=DIR", help="stage-3 folder of each source DET")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(run=cmd_transfer)

    p = sub.add_parser("subspace-tables", help="relative_performance.csv, transfer.csv and their markdown summaries")
    p.add_argument("--runs", nargs="+", type=Path, required=True, help="stage-3 folders")
    p.add_argument("--transfers", nargs="+", type=Path, required=True, help="transfer CSVs")
    p.add_argument("--stage1", type=Path, required=True, help="results/tables/stage1.csv")
    p.add_argument("--roles", required=True, help='JSON {task: "seen" | "unseen" | "target"}')
    p.add_argument("--relative-out", type=Path, required=True)
    p.add_argument("--relative-summary", type=Path, required=True)
    p.add_argument("--transfer-out", type=Path, required=True)
    p.add_argument("--transfer-summary", type=Path, required=True)
    p.set_defaults(run=cmd_subspace_tables)

    p = sub.add_parser("subspace-artifact", help="the learned subspace as one folder with a model card")
    p.add_argument("--subspace", type=Path, required=True, help="results/subspace/subspace.safetensors")
    p.add_argument("--points", type=Path, default=None, help="results/subspace/points.csv")
    p.add_argument("--metrics", type=Path, default=None, help="results/subspace/metrics.json")
    p.add_argument("--out-dir", type=Path, required=True)
    p.set_defaults(run=cmd_subspace_artifact)

    p = sub.add_parser("export-peft", help="a stage-1 or stage-3 solution as a PEFT adapter folder")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--delta", type=Path, help="a stage-1 delta.safetensors")
    source.add_argument("--intrinsic", type=Path, help="a stage-3 intrinsic.safetensors (needs --subspace)")
    p.add_argument("--subspace", type=Path, default=None, help="the subspace artifact folder or subspace.safetensors")
    p.add_argument("--backbone", default=None, help="another path to the backbone's weights than the file names")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(run=cmd_export_peft)

    p = sub.add_parser("figures", help="the report's figures (PNG and PDF): transfer, relative performance, curves")
    p.add_argument("--transfer", type=Path, required=True, help="results/tables/transfer.csv")
    p.add_argument("--relative", type=Path, required=True, help="results/tables/relative_performance.csv")
    p.add_argument("--stage1-runs", nargs="+", type=Path, required=True, help="stage-1 folders (metrics.json)")
    p.add_argument("--stage2-metrics", type=Path, required=True, help="results/subspace/metrics.json")
    p.add_argument("--stage3-runs", nargs="+", type=Path, required=True, help="stage-3 folders (result.json)")
    p.add_argument("--out-dir", type=Path, required=True)
    p.set_defaults(run=cmd_figures)

    p = sub.add_parser("resource-table", help="wall time and peak memory per stage from snakemake benchmark files")
    p.add_argument("--benchmarks", nargs="+", required=True, metavar="RULE=TSV", help="benchmark file of each job")
    p.add_argument("--out", type=Path, required=True, help="results/tables/resources.csv")
    p.add_argument("--summary-out", type=Path, required=True, help="results/tables/resources.md")
    p.set_defaults(run=cmd_resource_table)

    p = sub.add_parser("summary", help="results/summary.md: the headline tables, every row naming its files")
    p.add_argument("--stage1", type=Path, required=True, help="results/tables/stage1.csv")
    p.add_argument("--relative", type=Path, required=True, help="results/tables/relative_performance.csv")
    p.add_argument("--transfer", type=Path, required=True, help="results/tables/transfer.csv")
    p.add_argument("--transfer-runs", nargs="+", type=Path, required=True, help="the per-task transfer CSVs")
    p.add_argument("--resources", type=Path, default=None, help="results/tables/resources.csv")
    p.add_argument("--landscape-area", type=Path, required=True, help="results/tables/landscape_area.csv")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(run=cmd_summary)

    p = sub.add_parser("landscape", help="every DET on a grid over the plane through the DETs' points of a task")
    p.add_argument("--task", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--spec", type=_spec, required=True,
                   help='{"backbone", "dets", "init_seed", "precision", "device", "landscape": {...}}')
    p.add_argument("--subspace", type=Path, required=True, help="results/subspace/subspace.safetensors")
    p.add_argument("--points", type=Path, required=True, help="results/subspace/points.csv (the seen tasks' points)")
    p.add_argument("--stage1", nargs="+", required=True, metavar="DET=DIR", help="stage-1 folder of each DET")
    p.add_argument("--stage3", nargs="*", default=[], metavar="DET=DIR",
                   help="stage-3 folder of each DET (the points of a task the subspace never saw)")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(run=cmd_landscape)

    p = sub.add_parser("landscape-table", help="results/tables/landscape_area.csv from the landscapes' area rows")
    p.add_argument("--runs", nargs="+", type=Path, required=True, help="landscape folders (area.csv)")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(run=cmd_landscape_table)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError, KeyError) as err:
        _log(f"deltaspace {args.command}: error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
