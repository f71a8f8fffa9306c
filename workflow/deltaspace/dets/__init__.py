"""Delta tunings. The registry maps a method name to its class: a new DET touches this dict and one module."""
from __future__ import annotations

from ..backbones import Backbone
from .adapter import Adapter
from .base import DeltaModel, DeltaTuning, DetConfigError
from .bitfit import BitFit
from .finetune import FineTune
from .lora import LoRA
from .prefix import Prefix
from .prompt import Prompt

METHODS: dict[str, type[DeltaTuning]] = {cls.method: cls for cls in (Adapter, LoRA, Prefix, Prompt, BitFit, FineTune)}


def make_det(spec: dict) -> DeltaTuning:
    method = spec.get("method")
    if method not in METHODS:
        raise DetConfigError(f"DET method {method!r} is unknown; allowed: {sorted(METHODS)}")
    return METHODS[method](spec)


def build_delta_model(backbone: Backbone, spec: dict, init_seed: int) -> DeltaModel:
    return DeltaModel(backbone, make_det(spec), init_seed)


__all__ = ["METHODS", "DeltaModel", "DeltaTuning", "DetConfigError", "build_delta_model", "make_det"]
