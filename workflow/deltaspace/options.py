"""Declared options, PEFT-style: each option is a dataclass field holding its default, one line of help and the
JSON-schema keywords its value must meet (minimum, enum, ...); the JSON type follows from the field's annotation.

DETs (dets/<method>/config.py) and task sources (tasks/source_options.py) declare their options so, once; the
config schema's parts for them and the config reference (docs/configuration.md) are generated from here.
Torch-free: Snakemake reads these while it plans the jobs.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import types
import typing
from typing import Any

REQUIRED = dataclasses.MISSING  # the default of an option a config entry must give
JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}
TYPE_KEYWORDS = {"type", "enum", "const", "anyOf", "oneOf", "$ref"}


def option(default: Any = REQUIRED, help: str = "", **keywords) -> Any:
    """A declared option: its default (None: left out, the code decides), one line of help, JSON-schema keywords."""
    return dataclasses.field(default=default, metadata={"help": help, "schema": keywords})


def declared_options(cls) -> list[dataclasses.Field]:
    if "__dataclass_fields__" not in vars(cls):  # a subclass without the decorator would silently lose its options
        raise TypeError(f"{cls.__module__}.{cls.__qualname__} declares options: decorate it with "
                        f"@dataclass(kw_only=True)")
    return list(dataclasses.fields(cls))


def option_defaults(cls) -> dict[str, Any]:
    """Option name -> default, for the options that have one (not None, not REQUIRED)."""
    return {f.name: f.default for f in declared_options(cls) if f.default not in (REQUIRED, None)}


def summary(cls) -> str:
    """The first paragraph of a declaration's docstring, on one line."""
    return " ".join((inspect.getdoc(cls) or "").split("\n\n")[0].split())


def json_type(annotation) -> dict:
    """{"type": ...} for int, float, bool, str and their optional forms; {} for anything else."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = kinds[0] if len(kinds) == 1 else None
    return {"type": JSON_TYPES[annotation]} if annotation in JSON_TYPES else {}


def options_schema(cls, discriminator: tuple[str, str], with_defaults: bool) -> dict:
    """The JSON schema of one config entry of these options; `discriminator` (key, value) picks `cls`.

    with_defaults=False leaves `default` out: Snakemake's validation fills every schema default into the config,
    which would change the job specs of entries that never named the option."""
    annotations = typing.get_type_hints(cls)
    key, value = discriminator
    properties, required = {key: {"const": value}}, [key]
    for f in declared_options(cls):
        schema = {**json_type(annotations[f.name]), **copy.deepcopy(f.metadata["schema"])}
        if not TYPE_KEYWORDS & schema.keys():
            raise TypeError(f"{cls.__qualname__}.{f.name}: annotate it with int, float, bool or str, or give its "
                            f"JSON type to option(..., type=...)")
        if f.metadata["help"]:
            schema["description"] = f.metadata["help"]
        if f.default is REQUIRED:
            required.append(f.name)
        elif with_defaults and f.default is not None:
            schema["default"] = f.default
        properties[f.name] = schema
    return {"description": summary(cls), "type": "object", "additionalProperties": False, "required": required,
            "properties": properties}


def variant_defs(kind: str, key: str, classes: dict[str, type], help: str, with_defaults: bool,
                 describe=summary) -> dict[str, dict]:
    """$defs of an entry whose `key` picks one of `classes`: `kind` (the choice, one if/then per value) and
    `kind_<value>` (that value's options; a prefix keeps a user's method name clear of the schema's other $defs)."""
    defs = {kind: {"type": "object", "required": [key],
                   "properties": {key: {"description": help, "enum": list(classes)}},
                   "allOf": [{"if": {"properties": {key: {"const": value}}, "required": [key]},
                              "then": {"$ref": f"#/$defs/{kind}_{value}"}} for value in classes]}}
    for value, cls in classes.items():
        defs[f"{kind}_{value}"] = {**options_schema(cls, (key, value), with_defaults), "description": describe(cls)}
    return defs
