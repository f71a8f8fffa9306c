"""LoRA through PEFT, which implements it as the paper defines (A kaiming-uniform, B zero, scaling alpha/r)."""
from __future__ import annotations

from .architectures import profile_for
from .base import DeltaTuning


class LoRA(DeltaTuning):
    method = "lora"
    options = {"rank": 8, "alpha": 16, "target_modules": "auto"}

    def attach(self, backbone) -> None:
        from peft import LoraConfig, inject_adapter_in_model  # heavy import (~2 s): only jobs that use LoRA pay it

        targets = self.spec["target_modules"]
        if targets == "auto":
            targets = list(profile_for(backbone.model).lora_targets)
        config = LoraConfig(r=self.spec["rank"], lora_alpha=self.spec["alpha"], lora_dropout=0.0,
                            target_modules=targets, bias="none")
        inject_adapter_in_model(config, backbone.model)
        for name, p in backbone.model.named_parameters():
            p.requires_grad_("lora_" in name)
