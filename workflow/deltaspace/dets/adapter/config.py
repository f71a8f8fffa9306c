"""The adapter DET's declaration (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass

from ...options import option
from ..config import DetConfig, target_modules_option


@dataclass(kw_only=True)
class AdapterConfig(DetConfig):
    """Houlsby bottleneck adapter: out + up(SiLU(down(out))) on the output of each attention and FFN sub-layer,
    before the residual add; no biases."""

    method = "adapter"
    not_in_peft = "PEFT has no Houlsby bottleneck adapter (out + up(SiLU(down(out))) is not a LoRA or IA3 update)"

    bottleneck: int = option(12, "width of the bottleneck (down: d -> bottleneck, up: bottleneck -> d)", minimum=1)
    init_std: float = option(0.02, "standard deviation of the N(0, std) init of both weights", exclusiveMinimum=0)
    target_modules: str | list[str] = target_modules_option()
