"""The config reference, docs/configuration.md, generated from the config schema completed with the DETs' and
task sources' declarations: `python -m deltaspace.config_reference > docs/configuration.md`. Torch-free.

It walks the schema generically, so a renamed, added or removed section or key needs no change here: each
top-level mapping becomes a section, nested keys become dotted rows, a mapping of user-named entries (tasks,
dets) a `<name>` row, and an entry whose key picks a variant (if/then: `source`, `method`) one subsection per
variant.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .config_schema import SCHEMA_FILE, config_schema

COMMAND = "python -m deltaspace.config_reference > docs/configuration.md"
YAML_NAMES = {"array": "list", "object": "mapping"}  # what a YAML user calls a JSON-schema type
JSON_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping"}


def reference_schema(path: str | Path = SCHEMA_FILE) -> dict:
    """The schema Snakemake checks (the file plus the DETs' part) with the task part's defaults declared too."""
    from .tasks.source_options import task_schema_defs

    schema = config_schema(path)
    schema["$defs"].update(task_schema_defs(with_defaults=True))
    return schema


class Reference:
    def __init__(self, schema: dict):
        self.schema = schema
        self.defs = schema.get("$defs", {})

    # ---- schema nodes --------------------------------------------------------------------------------------

    def resolve(self, node: dict) -> dict:
        """A node with its $ref followed; the node's own keywords refine the target's (a default beside a $ref)."""
        while "$ref" in node:
            target = self.defs[node["$ref"].rsplit("/", 1)[-1]]
            own = {k: v for k, v in node.items() if k != "$ref"}
            properties = {k: {**target.get("properties", {}).get(k, {}), **v}
                          for k, v in {**target.get("properties", {}), **own.get("properties", {})}.items()}
            node = {**target, **own, **({"properties": properties} if properties else {})}
        return node

    @staticmethod
    def has_keys(node: dict) -> bool:
        """Named keys, variants, or user-named entries (a mapping only: `labels` may also be a list)."""
        return ("properties" in node or "allOf" in node
                or isinstance(node.get("additionalProperties"), dict) and node.get("type") == "object")

    # ---- one cell each ---------------------------------------------------------------------------------------

    def type_text(self, node: dict) -> str:
        node = self.resolve(node)
        if "const" in node:
            return JSON_NAMES[type(node["const"])]
        if "enum" in node:
            return " or ".join(dict.fromkeys(JSON_NAMES[type(v)] for v in node["enum"]))
        if "anyOf" in node or "oneOf" in node:
            return " or ".join(dict.fromkeys(self.type_text(v) for v in node.get("anyOf", node.get("oneOf"))))
        kinds = node.get("type", [])
        kinds = [kinds] if isinstance(kinds, str) else kinds
        items = f" of {self.type_text(node['items']).replace(' or ', '/')}" if "items" in node else ""
        return " or ".join(YAML_NAMES.get(k, k) + (items if k == "array" else "") for k in kinds)

    def allowed_text(self, node: dict) -> str:
        node = self.resolve(node)
        if "const" in node:
            return value(node["const"])
        if "enum" in node:
            return ", ".join(value(v) for v in node["enum"])
        if "anyOf" in node or "oneOf" in node:
            return " or ".join(self.alternative_text(v) for v in node.get("anyOf", node.get("oneOf")))
        limits = []
        for keyword, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                              ("exclusiveMaximum", "<")):
            if keyword in node:
                limits.append(f"{sign} {node[keyword]}")
        if node.get("minLength") == 1:
            limits.append("non-empty")
        if "pattern" in node:
            limits.append(f"matches `{node['pattern']}`")
        for keyword in ("minItems", "minProperties"):
            if keyword in node:
                limits.append("non-empty" if node[keyword] == 1 else f"at least {node[keyword]} entries")
        if node.get("uniqueItems"):
            limits.append("no repeats")
        if "items" in node and self.allowed_text(node["items"]):
            limits.append(f"each {self.allowed_text(node['items'])}")
        return "; ".join(dict.fromkeys(limits))

    def alternative_text(self, node: dict) -> str:
        """One of anyOf/oneOf: its values, or its type with its limits."""
        limits = self.allowed_text(node)
        if {"const", "enum"} & self.resolve(node).keys() or not limits:
            return limits or self.type_text(node)
        return f"{self.type_text(node)} ({limits})"

    def row(self, key: str, node: dict, required: bool) -> str:
        node = self.resolve(node)
        default = value(node["default"]) if "default" in node else "required" if required else ""
        return cells(f"`{key}`", self.type_text(node), default, self.allowed_text(node), text(node.get("description")))

    # ---- walking -----------------------------------------------------------------------------------------------

    def rows(self, key: str, node: dict, required: bool, subsections: list) -> list[str]:
        """Table rows of `key` and every key under it; variant subsections go to `subsections`."""
        node = self.resolve(node)
        if not self.has_keys(node):
            return [self.row(key, node, required)]
        lines = []
        properties = node.get("properties", {})
        grouped = self.same_ref_groups(properties)
        for name, child in properties.items():
            if name in grouped and grouped[name][0] != name:
                continue  # drawn with the first of its group
            if name in grouped:
                names = grouped[name]
                placeholder = f"{key}.<{self.resolve(child).get('title', 'key')}>"
                lines.append(cells(f"`{placeholder}`", "mapping", "", ", ".join(value(n) for n in names),
                                   text(self.resolve(child).get("description"))))
                lines += self.rows(placeholder, child, False, subsections)
                continue
            lines += self.rows(f"{key}.{name}", child, name in node.get("required", []), subsections)
        entries = node.get("additionalProperties")
        if isinstance(entries, dict) and node.get("type") == "object":
            placeholder = f"{key}.<name>"
            names = self.resolve(node.get("propertyNames", {}))
            lines.append(cells(f"`{placeholder}`", "mapping", "", self.allowed_text(names),
                               text(names.get("description"))))
            lines += self.rows(placeholder, entries, False, subsections)
        for variant in node.get("allOf", []):
            if "if" in variant and "then" in variant:
                (choice, condition), = variant["if"]["properties"].items()
                then = self.resolve(variant["then"])
                body = [line for name, child in then.get("properties", {}).items() if name != choice
                        for line in self.rows(f"{key}.{name}", child, name in then.get("required", []), subsections)]
                subsections.append((f"`{key}` with `{choice}: {condition['const']}`", then.get("description"), body))
        return lines

    @staticmethod
    def same_ref_groups(properties: dict) -> dict[str, list[str]]:
        """name -> the names of its group, for siblings that are the same bare $ref, three or more of them."""
        by_ref: dict[str, list[str]] = {}
        for name, child in properties.items():
            if child.keys() == {"$ref"}:
                by_ref.setdefault(child["$ref"], []).append(name)
        return {name: names for names in by_ref.values() if len(names) >= 3 for name in names}

    # ---- the document ------------------------------------------------------------------------------------------

    def markdown(self) -> str:
        top = self.resolve(self.schema)
        out = ["# Configuration reference", "",
               "<!-- Generated from workflow/schemas/config.schema.yaml and the declarations of the DETs",
               "(workflow/deltaspace/dets/<method>/config.py) and task sources (workflow/deltaspace/tasks/",
               f"source_options.py) by `{COMMAND}`.",
               "Do not edit: tests/test_config_reference.py fails when this file differs from its output. -->", "",
               text(top.get("description")), "",
               f"Required top-level keys: {', '.join(f'`{k}`' for k in top.get('required', []))}. A default in a "
               "section's own table is filled into the config when a key is left out. Defaults inside a "
               "variant (\"... with `method: ...`\") are applied by the code that reads the entry and never "
               "written into the config, so a job's settings hold only the options its config names.", ""]
        leaves: list[str] = []
        for name, node in top["properties"].items():
            resolved = self.resolve(node)
            if self.has_keys(resolved):
                out += self.leaf_table(top, leaves)
                leaves = []
                subsections: list = []
                rows = self.rows(name, resolved, name in top.get("required", []), subsections)
                out += self.table(f"`{name}`", resolved.get("description"), rows)
                for title, description, body in subsections:
                    out += self.table(title, description, body, level="###")
            else:
                leaves.append(name)
        out += self.leaf_table(top, leaves)
        return "\n".join(out).rstrip() + "\n"

    def leaf_table(self, top: dict, names: list[str]) -> list[str]:
        """Consecutive top-level keys that are single values share one table."""
        if not names:
            return []
        rows = [self.row(k, top["properties"][k], k in top.get("required", [])) for k in names]
        return self.table(", ".join(f"`{k}`" for k in names), None, rows)

    @staticmethod
    def table(title: str, description: str | None, rows: list[str], level: str = "##") -> list[str]:
        head = [f"{level} {title}", ""] + ([text(description), ""] if description else [])
        return head + ["| key | type | default | allowed | description |", "|---|---|---|---|---|", *rows, ""]


def value(v) -> str:
    """A value as YAML shows it, in backticks."""
    return f"`{_yaml(v)}`"


def _yaml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_yaml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_yaml(x)}" for k, x in v.items()) + "}"
    return str(v)


def text(description: str | None) -> str:
    """A description on one line."""
    return re.sub(r"\s+", " ", description or "").strip()


def cells(*columns: str) -> str:
    """One Markdown table row; a | inside a cell (even in backticks) would end the cell."""
    return "| " + " | ".join(c.replace("|", "\\|") for c in columns) + " |"


def render(path: str | Path = SCHEMA_FILE) -> str:
    return Reference(reference_schema(path)).markdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Print the config reference (docs/configuration.md): {COMMAND}")
    parser.add_argument("--schema", default=str(SCHEMA_FILE), help="the config schema (default: this checkout's)")
    args = parser.parse_args(argv)
    sys.stdout.write(render(args.schema))
    return 0


if __name__ == "__main__":
    sys.exit(main())
