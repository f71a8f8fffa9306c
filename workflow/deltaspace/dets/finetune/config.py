"""The fine-tuning DET's declaration (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass

from ...options import option
from ..config import DetConfig

ALL = "all"


@dataclass(kw_only=True)
class FineTuneConfig(DetConfig):
    """Fine-tuning as a DET: the solution vector is a chosen set of the backbone's own weights (theta_init = the
    pre-trained values, whatever init_seed says)."""

    method = "finetune"
    not_in_peft = "a delta of backbone weights is no adapter: add it to the weights and save the model instead"

    targets: str | list[str] = option(
        ALL, "backbone weights to fine-tune: all, a named set of the backbone's profile (attention, ffn, norms, "
             "embeddings), a parameter-name regex, or a list of them (union)",
        type=["string", "array"], minLength=1, minItems=1, items={"type": "string", "minLength": 1})
    layers: str | list[int] = option(
        ALL, "all, or the transformer block indices whose weights are kept (T5: encoder and decoder blocks alike)",
        oneOf=[{"const": ALL}, {"type": "array", "minItems": 1, "uniqueItems": True,
                                "items": {"type": "integer", "minimum": 0}}])
