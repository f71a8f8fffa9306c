"""The LoRA DET's declaration (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass

from ...options import option
from ..config import DetConfig, target_modules_option


@dataclass(kw_only=True)
class LoRAConfig(DetConfig):
    """LoRA, injected by PEFT as the paper defines it: W x + (alpha / rank) B A x on each targeted projection,
    A kaiming-uniform (seeded), B zero, no dropout.

    Exported as PEFT LoRA itself: the injected LoraConfig and tensors are saved as they are."""

    method = "lora"
    peft_type = "LORA"

    rank: int = option(8, "rank r of each update B A", minimum=1)
    alpha: float = option(16, "scaling numerator: updates are scaled by alpha / rank", exclusiveMinimum=0)
    target_modules: str | list[str] = target_modules_option()
