"""BitFit as a zero-initialised bias delta on every Linear and norm of the transformer blocks (our own module).

Adding a delta (rather than training the existing bias) gives the same function for backbones with biases
(BERT) and adds the missing ones where the backbone has none (T5, Llama); theta_init is zero either way."""
from __future__ import annotations

import torch
from torch import nn

from ..architectures import matching_modules, profile_for, replace_module
from ..base import DeltaTuning, DetConfigError
from .config import BitFitConfig


class BiasDelta(nn.Module):
    def __init__(self, base: nn.Module, width: int):
        super().__init__()
        self.base = base
        self.bias_delta = nn.Parameter(torch.zeros(width))

    @property
    def weight(self):  # backbones read the wrapped layer's weight (T5 checks its dtype)
        return self.base.weight

    def forward(self, x):
        return self.base(x) + self.bias_delta


def _output_width(module: nn.Module) -> int | None:
    if isinstance(module, nn.Linear):
        return module.out_features
    kind = type(module).__name__
    weight = getattr(module, "weight", None)
    if ("LayerNorm" in kind or "RMSNorm" in kind) and weight is not None and weight.dim() == 1:
        return weight.shape[0]
    return None


class BitFit(DeltaTuning):
    config = BitFitConfig

    def attach(self, backbone) -> None:
        blocks = profile_for(backbone.model).blocks
        found = [(n, m, _output_width(m)) for n, m in matching_modules(backbone.model, blocks + r"[^.]+(\.[^.]+)*$")]
        found = [(n, m, w) for n, m, w in found
                 if w is not None and (isinstance(m, nn.Linear) or self.spec["include_norms"])]
        if not found:
            raise DetConfigError(f"bitfit: no Linear or norm module found in the blocks of {backbone.name_or_path}")
        for name, module, width in found:
            replace_module(backbone.model, name, BiasDelta(module, width))
