"""Where each DET attaches, per model family: the one registry a new backbone family touches.

Patterns are regular expressions matched (re.search) against module names of the Hugging Face model.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from torch import nn


@dataclass(frozen=True)
class ArchitectureProfile:
    lora_targets: tuple[str, ...]  # PEFT target_modules: the query and value projections
    attention: str  # modules that call the attention interface and take a prefix (self-attention only)
    sublayer_outputs: tuple[str, ...]  # last Linear of each sub-layer, before the residual add (adapters)
    blocks: str  # the transformer blocks (BitFit adds bias deltas only inside them); group 1: the block's index
    # Fine-tuning's named parameter sets: name -> regex over parameter names (finetune's `targets`).
    weight_sets: dict[str, str] = field(default_factory=dict)
    unscored: str | None = None  # parameters that rank-classification scoring never uses (left out of "all")


PROFILES: dict[str, ArchitectureProfile] = {
    "bert": ArchitectureProfile(
        lora_targets=("query", "value"),
        attention=r"attention\.self$",
        sublayer_outputs=(r"attention\.output\.dense$", r"layer\.\d+\.output\.dense$"),
        blocks=r"encoder\.layer\.(\d+)\.",
        weight_sets={"attention": r"\.attention\.(self\.(query|key|value)|output\.dense)\.",
                     "ffn": r"\.(intermediate\.dense|layer\.\d+\.output\.dense)\.",
                     "norms": r"LayerNorm\.", "embeddings": r"^embeddings\.\w+_embeddings\."},
        unscored=r"^pooler\.",  # scoring mean-pools the hidden states itself
    ),
    "t5": ArchitectureProfile(
        lora_targets=("q", "v"),
        attention=r"block\.\d+\.layer\.0\.SelfAttention$",
        sublayer_outputs=(r"SelfAttention\.o$", r"EncDecAttention\.o$", r"DenseReluDense\.wo$"),
        blocks=r"(?:encoder|decoder)\.block\.(\d+)\.",
        weight_sets={"attention": r"(SelfAttention|EncDecAttention)\.(q|k|v|o)\.", "ffn": r"DenseReluDense\.",
                     "norms": r"layer_norm\.", "embeddings": r"^(shared|lm_head)\."},
    ),
    "llama": ArchitectureProfile(
        lora_targets=("q_proj", "v_proj"),
        attention=r"layers\.\d+\.self_attn$",
        sublayer_outputs=(r"self_attn\.o_proj$", r"mlp\.down_proj$"),
        blocks=r"layers\.(\d+)\.",
        weight_sets={"attention": r"self_attn\.(q|k|v|o)_proj\.", "ffn": r"mlp\.", "norms": r"norm\.weight$",
                     "embeddings": r"(embed_tokens\.|^lm_head\.)"},
    ),
}
# Families that share a layout with one above.
ALIASES = {"roberta": "bert", "xlm-roberta": "bert", "mt5": "t5", "umt5": "t5", "mistral": "llama",
           "qwen2": "llama", "qwen3": "llama", "gemma": "llama", "gemma2": "llama", "gemma3_text": "llama"}


class UnsupportedArchitecture(ValueError):
    pass


def profile_for(model: nn.Module) -> ArchitectureProfile:
    model_type = model.config.model_type
    name = ALIASES.get(model_type, model_type)
    if name not in PROFILES:
        raise UnsupportedArchitecture(
            f"backbone model_type {model_type!r} has no DET attachment profile; known: "
            f"{sorted(set(PROFILES) | set(ALIASES))}. Add one to deltaspace/dets/architectures.py "
            f"or give the DET explicit `target_modules`."
        )
    return PROFILES[name]


def matching_modules(model: nn.Module, patterns, kind=None) -> list[tuple[str, nn.Module]]:
    """(name, module) pairs whose name matches any pattern, in the model's registration order."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    found = [(n, m) for n, m in model.named_modules()
             if n and any(re.search(p, n) for p in patterns) and (kind is None or isinstance(m, kind))]
    return found


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
