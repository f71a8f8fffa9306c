"""Prompt tuning (our own module, so one path serves encoders, seq2seq and causal LMs alike): P trainable
embeddings prepended to the input, initialised from randomly drawn vocabulary embeddings (seeded)."""
from __future__ import annotations

import torch
from torch import nn

from .base import DeltaTuning


class Prompt(DeltaTuning):
    method = "prompt"
    options = {"length": 20}

    def attach(self, backbone) -> None:
        table = backbone.input_embeddings().weight
        rows = torch.randint(0, table.shape[0], (self.spec["length"],))
        self.prompt = nn.Parameter(table.detach()[rows].clone().float())

    def input_prefix(self):
        return self.prompt
