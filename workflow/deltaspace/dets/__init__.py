"""Delta tunings (DETs), PEFT-style: one folder per method, named as configs name the method, holding
`config.py` (its declaration: a DetConfig subclass; torch-free) and `model.py` (a DeltaTuning subclass whose
`config` is that class). A new DET is its folder plus one line in REGISTERED (and a test).

This module imports no torch, so Snakemake reads METHODS while it plans the jobs; the torch side (make_det,
build_delta_model, DeltaModel, DeltaTuning) is imported on first use.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from ..options import variant_defs
from .config import DetConfig, DetConfigError

if TYPE_CHECKING:
    from ..backbones import Backbone
    from .base import DeltaModel, DeltaTuning

# The registry: one line per DET, its folder in this package. Folders rather than one module per DET importing
# torch lazily: the declaration is a plain torch-free module, the torch code plain torch code.
REGISTERED = (
    "adapter",
    "lora",
    "prefix",
    "prompt",
    "bitfit",
    "finetune",
)


def _declaration(folder: str) -> type[DetConfig]:
    """The DetConfig subclass that <folder>/config.py defines."""
    module = import_module(f"{__name__}.{folder}.config")
    found = [c for c in vars(module).values()
             if isinstance(c, type) and issubclass(c, DetConfig) and c.__module__ == module.__name__]
    if len(found) != 1 or getattr(found[0], "method", None) != folder:
        raise DetConfigError(f"{module.__name__} must define one DetConfig subclass with method = {folder!r}; "
                             f"found {[(c.__name__, getattr(c, 'method', None)) for c in found]}")
    return found[0]


METHODS: dict[str, type[DetConfig]] = {folder: _declaration(folder) for folder in REGISTERED}


def det_schema_defs(with_defaults: bool = True) -> dict[str, dict]:
    """The config schema's $defs for one `dets` entry, from the declarations: `det` and `det_<method>` each."""
    return variant_defs("det", "method", METHODS, "the DET method: a folder of deltaspace/dets",
                        with_defaults, describe=lambda config: config.describe())


def make_det(spec: dict) -> DeltaTuning:
    method = spec.get("method")
    if method not in METHODS:
        raise DetConfigError(f"DET method {method!r} is unknown; allowed: {sorted(METHODS)}")
    return METHODS[method].model_class()(spec)


def build_delta_model(backbone: Backbone, spec: dict, init_seed: int) -> DeltaModel:
    from .base import DeltaModel

    return DeltaModel(backbone, make_det(spec), init_seed)


def __getattr__(name: str):
    if name in ("DeltaModel", "DeltaTuning"):  # torch classes, imported on first use (see the docstring)
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHODS", "REGISTERED", "DeltaModel", "DeltaTuning", "DetConfig", "DetConfigError",
           "build_delta_model", "det_schema_defs", "make_det"]
