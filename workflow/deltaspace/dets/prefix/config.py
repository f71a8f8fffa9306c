"""The prefix-tuning DET's declaration (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass

from ...options import option
from ..config import DetConfig, target_modules_option


@dataclass(kw_only=True)
class PrefixConfig(DetConfig):
    """Prefix tuning, the paper's reparameterised form: per group of self-attention layers a prefix matrix goes
    through Linear(d, hidden) -> tanh -> Linear(hidden, layers * 2 * kv), giving keys/values prepended inside
    the attention function."""

    method = "prefix"
    not_in_peft = ("PEFT's PREFIX_TUNING passes the prefix as past key/values: no prefix in a T5 encoder but one "
                   "on cross-attention, shifted positions of the real tokens (RoPE/BERT), and it refuses BERT")

    length: int = option(20, "prefix positions prepended to the keys and values of every layer", minimum=1)
    hidden: int = option(24, "width of the reparameterisation's hidden layer", minimum=1)
    target_modules: str | list[str] = target_modules_option()
