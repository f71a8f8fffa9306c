"""Houlsby bottleneck adapter (our own module: PEFT has none): out + B(SiLU(A(out))) on each sub-layer's
output before the residual add; no biases; weights N(0, 0.02) as in the paper's code."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ..architectures import matching_modules, profile_for, replace_module
from ..base import DeltaTuning, DetConfigError
from .config import AdapterConfig


class AdaptedLinear(nn.Module):
    def __init__(self, base: nn.Linear, bottleneck: int, init_std: float):
        super().__init__()
        self.base = base
        self.adapter_down = nn.Linear(base.out_features, bottleneck, bias=False)
        self.adapter_up = nn.Linear(bottleneck, base.out_features, bias=False)
        nn.init.normal_(self.adapter_down.weight, std=init_std)
        nn.init.normal_(self.adapter_up.weight, std=init_std)

    @property
    def weight(self):  # backbones read the wrapped layer's weight (T5 checks its dtype)
        return self.base.weight

    def forward(self, x):
        out = self.base(x)
        return out + self.adapter_up(F.silu(self.adapter_down(out)))


class Adapter(DeltaTuning):
    config = AdapterConfig

    def attach(self, backbone) -> None:
        targets = self.spec["target_modules"]
        targets = profile_for(backbone.model).sublayer_outputs if targets == "auto" else targets
        found = matching_modules(backbone.model, targets, nn.Linear)
        if not found:
            raise DetConfigError(f"adapter: no Linear module of {backbone.name_or_path} matches {targets}")
        for name, module in found:
            replace_module(backbone.model, name, AdaptedLinear(module, self.spec["bottleneck"], self.spec["init_std"]))
