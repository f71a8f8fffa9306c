"""One source for every setting: the DETs' and task sources' declarations, the schema's parts for them, and
the generated config reference (docs/configuration.md) agree; planning the jobs imports no torch."""
from __future__ import annotations

import subprocess
import sys

import jsonschema
import pytest
import yaml

from conftest import REPO
from deltaspace.config_reference import COMMAND, render
from deltaspace.dets import METHODS
from deltaspace.options import declared_options, options_schema
from deltaspace.tasks.source_options import SOURCES, task_schema_defs

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
REFERENCE = REPO / "docs" / "configuration.md"


def test_configuration_md_is_generated_from_the_schema():
    assert REFERENCE.is_file() and REFERENCE.read_text() == render(SCHEMA), (
        f"docs/configuration.md differs from the schema and the declarations; regenerate it: {COMMAND}")


def test_the_schemas_task_part_is_the_declarations():
    """The schema keeps its task part (Snakemake checks tasks even without this package) equal to the declarations."""
    defs = yaml.safe_load(SCHEMA.read_text())["$defs"]
    declared = task_schema_defs(with_defaults=False)
    differing = sorted(name for name in declared if defs.get(name) != declared[name])
    assert not differing, (f"workflow/schemas/config.schema.yaml's {differing} differ from the declarations in "
                           f"workflow/deltaspace/tasks/source_options.py; these are the declared ones:\n"
                           + yaml.safe_dump({name: declared[name] for name in differing}, sort_keys=False))


def test_the_schema_names_no_det_method():
    """DET methods and their options come from the registry (a new DET touches no schema)."""
    defs = yaml.safe_load(SCHEMA.read_text())["$defs"]
    assert not [name for name in defs if name.startswith("det_") or name in METHODS]
    assert set(defs["det"]["properties"]) == {"method"} and "enum" not in defs["det"]["properties"]["method"]


DECLARATIONS = {**{f"dets.{m}": (c, "method") for m, c in METHODS.items()},
                **{f"tasks.{s}": (c, "source") for s, c in SOURCES.items()}}


@pytest.mark.parametrize("where", list(DECLARATIONS))
def test_every_option_has_help_and_a_valid_default(where):
    cls, key = DECLARATIONS[where]
    schema = options_schema(cls, (key, where.split(".")[1]), with_defaults=True)  # raises for an undeclared type
    for option in declared_options(cls):
        assert option.metadata["help"], f"{where}.{option.name} has no help"
        if "default" in schema["properties"][option.name]:
            jsonschema.validate(option.default, schema["properties"][option.name])


def test_schema_nodes_hold_no_stray_keys():
    """A comma inside an unquoted flow-mapping description (`{description: a, b, type: ...}`) cuts the
    description and adds a key with no value; the reference would show the cut text."""
    stray = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                if value is None and key not in ("const", "default"):
                    stray.append(f"{'.'.join(path)}: {key!r}")
                walk(value, [*path, str(key)])
        elif isinstance(node, list):
            for value in node:
                walk(value, path)

    walk(yaml.safe_load(SCHEMA.read_text()), [])
    assert not stray, f"quote these descriptions in {SCHEMA.name}: {stray}"


def test_planning_imports_no_torch():
    """What Snakemake imports while it plans the jobs (and the reference generator) stays free of torch."""
    code = ("import sys; import deltaspace.config_schema, deltaspace.config_reference, deltaspace.dets, "
            "deltaspace.export, deltaspace.tasks; deltaspace.config_reference.render(); "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
