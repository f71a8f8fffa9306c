"""Optimizers by config name: Adafactor as in the paper (constant lr), Adafactor with the lr scaled by each
parameter's RMS (transformers' scale_parameter), AdamW."""
from __future__ import annotations

import torch

from .adafactor import Adafactor

OPTIMIZERS = ("adafactor", "adafactor_scaled", "adamw")


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "adafactor":
        return Adafactor(params, lr=lr)
    if name == "adafactor_scaled":
        return Adafactor(params, lr=lr, scale_parameter=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    raise ValueError(f"optimizer={name!r}: allowed are {', '.join(OPTIMIZERS)}")
