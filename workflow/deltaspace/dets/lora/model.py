"""LoRA through PEFT, which implements it as the paper defines (A kaiming-uniform, B zero, scaling alpha/r)."""
from __future__ import annotations

from ..architectures import profile_for
from ..base import DeltaTuning
from .config import LoRAConfig


class LoRA(DeltaTuning):
    config = LoRAConfig

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

    def peft_adapter(self, backbone):
        """The LoraConfig PEFT injected (the exact target modules, rank and alpha) and its tensors, under the keys
        PeftModel.from_pretrained expects of a wrapped model (base_model.model.<module path>)."""
        from peft import get_peft_model_state_dict

        config = backbone.model.peft_config["default"]
        state = get_peft_model_state_dict(backbone.model, adapter_name="default")
        return config, {f"base_model.model.{k}": v for k, v in state.items()}
