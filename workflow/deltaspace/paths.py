"""The results layout, in one place: every output's path and every file name inside a stage's folder.

The rules import it for their inputs and outputs (as patterns with {task}, {det} and {seed} wildcards) and
hand the jobs explicit file paths; the package writes and reads exactly those files. Python callers may give
a folder instead of a stage's files: `<Files>.at(folder)` puts each file under its standard name. Torch-free:
Snakemake imports it while it plans the jobs.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, make_dataclass
from pathlib import Path

RESULTS = "results"
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
CHECKPOINTS = f"{RESULTS}/checkpoints"
TABLES = f"{RESULTS}/tables"
FIGURES = f"{RESULTS}/figures"
SUMMARY = f"{RESULTS}/summary.md"
FIGURE_FORMATS = ("png", "pdf")
CHECKPOINT_NAME = "last.pt"


@dataclass(frozen=True)
class Files:
    """A stage's output files. Subclasses list each file's field with its standard name as the default."""

    @classmethod
    def at(cls, folder: str | Path, **names: str):
        """The files under `folder` (str patterns stay str, for the rules); `names` fills fields without a default."""
        join = (lambda name: f"{folder}/{name}") if isinstance(folder, str) else (lambda name: Path(folder) / name)
        values = {f.name: join(names.get(f.name, f.default)) for f in fields(cls)}
        return cls(**values)

    @classmethod
    def of(cls, given, **names: str):
        """`given` itself if it is already this stage's files, else the files under the folder `given`."""
        return given if isinstance(given, cls) else cls.at(Path(given), **names)

    def paths(self) -> list:
        return [getattr(self, f.name) for f in fields(self)]

    def formatted(self, **wildcards):
        """The same files with the patterns' wildcards filled in."""
        return type(self)(**{f.name: type(v)(str(v).format(**wildcards))
                             for f in fields(self) for v in [getattr(self, f.name)]})


def stage_files(name: str, doc: str, methods: dict | None = None, **names: str) -> type[Files]:
    """A Files class: one field per file, its standard name the default."""
    cls = make_dataclass(name, [(field, Path, default) for field, default in names.items()], bases=(Files,),
                         frozen=True, namespace=methods or {})
    cls.__doc__, cls.__module__ = doc, __name__
    return cls


# One line per stage's files: field=standard file name. What each holds is in docs/usage.md, "Outputs".
TaskData = stage_files("TaskData", "prepare_task: a task's splits, its corpus' leak keys and summary.",
                       {"split": lambda self, name: getattr(self, name)},
                       train="train.jsonl", dev="dev.jsonl", test="test.jsonl", corpus="corpus_keys.npy",
                       summary="task.json")
OriginalRun = stage_files("OriginalRun", "original (stage 1): one DET tuned alone.", delta="delta.safetensors",
                          metrics="metrics.json", predictions="predictions.csv")
Vectors = stage_files("Vectors", "collect_vectors: one DET's deltas as a matrix.", matrix="{det}.safetensors",
                      index="{det}_index.csv")
Decomposition = stage_files("Decomposition", "decompose (stage 2): the shared subspace.",
                            subspace="subspace.safetensors", svd_subspace="svd_subspace.safetensors",
                            points="points.csv", metrics="metrics.json")
OptimizeRun = stage_files("OptimizeRun", "optimize (stage 3): I* of one DET on one task.", result="result.json",
                          intrinsic="intrinsic.safetensors", predictions="predictions.csv")
ResultTables = stage_files("ResultTables", "result_tables: relative performance and transfer.",
                           relative="relative_performance.csv", relative_summary="relative_performance.md",
                           intervals="relative_intervals.csv",
                           transfer="transfer.csv", transfer_summary="transfer.md")
Figures = stage_files("Figures", "figures: each PNG with a PDF twin (pdf_twin).", transfer_matrix="transfer_matrix.png",
                      relative_performance="relative_performance.png", curves_original="curves_original.png",
                      curves_decompose="curves_decompose.png", curves_optimize="curves_optimize.png")
Landscape = stage_files("Landscape", "landscape: one task's grid and maps; heatmap(det) names a DET's heat map.",
                        {"heatmap": lambda self, det: _sibling(self.grid, f"heatmap_{det}.png")},
                        grid="grid.csv", area="area.csv", info="landscape.json", region="region.png")
# The artifact holds decompose's files under their own names, and a model card.
Artifact = stage_files("Artifact", "subspace_artifact: the subspace as one folder.", subspace=Decomposition.subspace,
                       points=Decomposition.points, card="README.md")
PeftAdapter = stage_files("PeftAdapter", "export_peft: a PEFT adapter folder (PEFT's file names) and provenance.",
                          config="adapter_config.json", weights="adapter_model.safetensors",
                          provenance="deltaspace.json")
ResourceTable = stage_files("ResourceTable", "resource_table: time and memory per stage.", table="resources.csv",
                            summary="resources.md")


def file_in(given, files: type[Files], field: str) -> Path:
    """`given` if it is a file path, else that file's standard name in the folder `given`."""
    return getattr(files.at(Path(given)), field) if Path(given).is_dir() else Path(given)


def _sibling(path, name: str):
    return f"{path.rsplit('/', 1)[0]}/{name}" if isinstance(path, str) else Path(path).with_name(name)


def pdf_twin(png):
    """The PDF written beside a figure's PNG (same stem)."""
    return f"{str(png)[:-4]}.pdf" if isinstance(png, str) else Path(png).with_suffix(".pdf")


# ---- where each stage's files live (Snakemake patterns) ----------------------------------------------------

# A GGUF backbone, converted once into a save_pretrained folder that every model job loads.
CONVERTED_BACKBONE = f"{RESULTS}/backbone"
# The positive control's planted tasks (plant_tasks): one JSON-lines file per task and what was planted.
PLANTED = f"{RESULTS}/planted/{{task}}.jsonl"
PLANTED_INFO = f"{RESULTS}/planted/planted.json"
PLANTED_BASIS = f"{RESULTS}/planted/basis.safetensors"  # U, D x r: the subspace stage 2 should find
DATA = TaskData.at(f"{RESULTS}/data/{{task}}")
ORIGINAL = OriginalRun.at(f"{RESULTS}/original/{{task}}/{{det}}/seed{{seed}}")
ORIGINAL_CHECKPOINT = f"{CHECKPOINTS}/original/{{task}}/{{det}}/seed{{seed}}/{CHECKPOINT_NAME}"
VECTORS = Vectors.at(f"{RESULTS}/vectors")
ORIGINAL_TABLE = f"{TABLES}/original.csv"
OVERLAP = f"{TABLES}/overlap.csv"
DECOMPOSITION = Decomposition.at(f"{RESULTS}/decompose")
DECOMPOSE_CHECKPOINT = f"{CHECKPOINTS}/decompose/{CHECKPOINT_NAME}"
OPTIMIZE = OptimizeRun.at(f"{RESULTS}/optimize/{{task}}/{{det}}/seed{{seed}}")
TRANSFER = f"{RESULTS}/transfer/{{task}}/seed{{seed}}.csv"
TRANSFER_PREDICTIONS = f"{RESULTS}/transfer/{{task}}/seed{{seed}}_predictions.csv"
RESULT_TABLES = ResultTables.at(TABLES)
FIGURES_FILES = Figures.at(FIGURES)
LANDSCAPE = Landscape.at(f"{RESULTS}/landscape/{{task}}/seed{{seed}}")
LANDSCAPE_AREA = f"{TABLES}/landscape_area.csv"
# Snakemake's per-job benchmark record (wall time, peak memory) of every model rule, summed by resource_table.
BENCHMARK_FILES = {
    "original": f"{BENCHMARKS}/original/{{task}}/{{det}}/seed{{seed}}.tsv",
    "decompose": f"{BENCHMARKS}/decompose/decompose.tsv",
    "optimize": f"{BENCHMARKS}/optimize/{{task}}/{{det}}/seed{{seed}}.tsv",
    "transfer": f"{BENCHMARKS}/transfer/{{task}}/seed{{seed}}.tsv",
    "landscape": f"{BENCHMARKS}/landscape/{{task}}/seed{{seed}}.tsv",
}
RESOURCES = ResourceTable.at(TABLES)
ARTIFACT = Artifact.at(f"{RESULTS}/export/subspace")
PEFT = PeftAdapter.at(f"{RESULTS}/export/peft/{{task}}/{{det}}/seed{{seed}}")
