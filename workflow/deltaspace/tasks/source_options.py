"""What each task source accepts in a task's config entry (`tasks.<name>`), declared once: each key's type,
default and one line of help (deltaspace.options). validate_spec and the loaders read them here; the schema's
task part (workflow/schemas/config.schema.yaml) must equal `task_schema_defs(with_defaults=False)`, which
tests/test_config_reference.py checks. The schema keeps its copy (unlike the DETs' part, which is generated
when Snakemake validates) so that Snakemake checks tasks even where it cannot import this package (--use-conda)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..options import REQUIRED, option, variant_defs
from .metrics import METRICS

LABELS = {"type": ["object", "array"], "minProperties": 2, "minItems": 2,
          "additionalProperties": {"type": ["string", "number", "boolean"]},
          "items": {"type": ["string", "number", "boolean"]}}


@dataclass(kw_only=True)
class TaskSource:
    """Keys every task entry takes besides `source`."""

    source: ClassVar[str]

    description: str | None = option(None, "what the task is, in a few words", minLength=1)
    primary_metric: str | None = option(
        None, "picks the best dev checkpoint and is reported as dev/test (deltaspace.tasks.metrics); default: "
              "the metric_table's metric for the task, else the packaged data set's own, else accuracy",
        enum=sorted(METRICS))
    scoring: str | None = option(
        None, "rank (score each candidate answer) or generate (the paper's text-to-text format); default: "
              "backbone.scoring; a free-text task always generates", enum=["rank", "generate"])


@dataclass(kw_only=True)
class PackagedSource(TaskSource):
    """One of the data sets packaged in the data wheels (resources/wheels)."""

    source = "packaged"
    name: str | None = option(None, "the packaged data set; default: the task's own name", minLength=1)


@dataclass(kw_only=True)
class ColumnSource(TaskSource):
    """Keys of the sources that read labelled columns."""

    text_column: str = option("text", "column holding the input text", minLength=1)
    text_pair_column: str | None = option(None, "column of a second text, joined to the first with [SEP]",
                                          minLength=1)
    label_column: str = option("label", "column holding the raw label", minLength=1)
    labels: dict | list | None = option(
        None, "raw label value -> answer text (a mapping), or the answer texts of raw labels 0, 1, 2, ... (a list); "
              "default: the distinct raw labels as text", **LABELS)


@dataclass(kw_only=True)
class FileSource(ColumnSource):
    """A local CSV, TSV or JSON-lines file with a text and a label column."""

    source = "file"
    path: str = option(REQUIRED, "the file, relative to the working directory", minLength=1)
    format: str | None = option(None, "the file's format; default: read from its suffix",
                                enum=["csv", "tsv", "jsonl"])


@dataclass(kw_only=True)
class HuggingFaceSource(ColumnSource):
    """A Hugging Face dataset: a hub name or a folder written by save_to_disk."""

    source = "huggingface"
    path: str = option(REQUIRED, "hub name or save_to_disk folder", minLength=1)
    name: str | None = option(None, "the dataset's configuration name", minLength=1)
    split: str | list[str] | None = option(
        None, "a split name, or a list of names pooled before sampling; default: every split pooled",
        type=["string", "array"], items={"type": "string"})


@dataclass(kw_only=True)
class CrossFitSource(TaskSource):
    """A CrossFit task folder of <prefix>_{train,dev,test}.tsv files of input<TAB>output lines; its splits are
    kept."""

    source = "crossfit"
    path: str | None = option(None, "the task's folder; under crossfit_dir if relative; default: "
                                    "crossfit_dir/<task>", minLength=1)
    prefix: str | None = option(None, "the split files' name prefix; default: the folder's name", minLength=1)
    max_candidates: int = option(20, "more distinct train outputs than this make the task generative (free "
                                     "text: every output is a reference, scored by generation)", minimum=2)


SOURCES: dict[str, type[TaskSource]] = {cls.source: cls for cls in (PackagedSource, FileSource, HuggingFaceSource,
                                                                     CrossFitSource)}


def task_schema_defs(with_defaults: bool = True) -> dict[str, dict]:
    """The config schema's $defs for one `tasks` entry: `task` and `task_<source>` each."""
    return variant_defs("task", "source", SOURCES, "where the task's labelled examples come from", with_defaults)
