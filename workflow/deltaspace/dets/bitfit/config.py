"""The BitFit DET's declaration (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass

from ...options import option
from ..config import DetConfig


@dataclass(kw_only=True)
class BitFitConfig(DetConfig):
    """BitFit as a zero-initialised bias delta on every Linear (and norm) of the transformer blocks: for BERT the
    same function as training its biases, for T5 and Llama it adds the biases they lack."""

    method = "bitfit"
    not_in_peft = "PEFT has no BitFit method, and T5/Llama have no biases to hold the delta"

    include_norms: bool = option(True, "also add a bias delta to each LayerNorm/RMSNorm of the blocks")
