"""The config schema Snakemake validates against: workflow/schemas/config.schema.yaml, whose `dets` entries are
completed here from the DETs' declarations (deltaspace.dets), so that a new DET touches only its folder and the
registry. Torch-free (Snakemake calls it while it plans the jobs)."""
from __future__ import annotations

from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, ValidationError

from .dets import det_schema_defs

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


def config_schema(path: str | Path = SCHEMA_FILE) -> dict:
    """The schema file with its `det` definition replaced by the one generated from the DET declarations."""
    schema = yaml.safe_load(Path(path).read_text())
    schema["$defs"].update(det_schema_defs())
    return schema


def first_error(config: dict, path: str | Path = SCHEMA_FILE) -> ValidationError | None:
    """The first error of a config (defaults already filled in) against the completed schema. A plain validator:
    the generated DET options' defaults are documentation only; each DET fills them in when it is built, so a
    job's spec holds only the options its config names."""
    return next(Draft202012Validator(config_schema(path)).iter_errors(config), None)
