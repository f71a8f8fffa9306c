"""Optimizers by config name; Adafactor as in the paper (constant lr, no relative step, no scaling)."""
from __future__ import annotations

import torch

from .adafactor import Adafactor

OPTIMIZERS = ("adafactor", "adamw")


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "adafactor":
        return Adafactor(params, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    raise ValueError(f"optimizer={name!r}: allowed are {', '.join(OPTIMIZERS)}")
