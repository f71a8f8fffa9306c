"""Prompt tuning (our own module, so one path serves encoders, seq2seq and causal LMs alike): P trainable
embeddings prepended to the input, initialised from randomly drawn vocabulary embeddings (seeded)."""
from __future__ import annotations

import torch
from torch import nn

from ..base import DeltaTuning
from .config import PromptConfig


class Prompt(DeltaTuning):
    config = PromptConfig

    def attach(self, backbone) -> None:
        table = backbone.input_embeddings().weight
        rows = torch.randint(0, table.shape[0], (self.spec["length"],))
        self.prompt = nn.Parameter(table.detach()[rows].clone().float())

    def input_prefix(self):
        return self.prompt

    def peft_adapter(self, backbone):
        from peft import PromptTuningConfig

        from ...export import TASK_TYPES

        prompt = self.prompt.detach()
        config = PromptTuningConfig(task_type=TASK_TYPES[backbone.kind], num_virtual_tokens=prompt.shape[0],
                                    token_dim=prompt.shape[1], num_transformer_submodules=1)
        return config, {"prompt_embeddings": prompt}
