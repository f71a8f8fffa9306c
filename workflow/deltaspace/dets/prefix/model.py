"""Prefix tuning, the paper's reparameterised form (our own module: PEFT's refuses BERT on transformers 5).

Per group of self-attention layers (the encoder; for seq2seq also the decoder's self-attention) a prefix
matrix (length x d_model) goes through Linear(d_model -> hidden) -> tanh -> Linear(hidden -> layers*2*kv),
no biases. The keys/values it yields are prepended inside the attention function, which works for every
model that dispatches through transformers' attention interface (BERT, T5, Llama in transformers 5).
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from transformers import AttentionInterface

from ...attention import sdpa
from ..architectures import matching_modules, profile_for
from ..base import DeltaTuning, DetConfigError
from .config import PrefixConfig

PREFIX_ATTRIBUTE = "_deltaspace_prefix"


def _pad_last(t: torch.Tensor, width: int, value) -> torch.Tensor:
    pad = t.new_full((*t.shape[:-1], width), value)
    return torch.cat([pad, t], dim=-1)


def sdpa_with_prefix(module, query, key, value, attention_mask, *args, **kwargs):
    """Our sdpa attention (deltaspace.attention), with this module's prefix keys/values prepended when one is set."""
    prefix = getattr(module, PREFIX_ATTRIBUTE, None)
    if prefix is None:
        return sdpa(module, query, key, value, attention_mask, *args, **kwargs)
    prefix_key, prefix_value = (t.to(key.dtype).expand(key.shape[0], -1, -1, -1) for t in prefix)
    n = prefix_key.shape[2]
    q_len, k_len = query.shape[2], key.shape[2]
    is_causal = kwargs.pop("is_causal", None)
    is_causal = getattr(module, "is_causal", False) if is_causal is None else is_causal
    if attention_mask is None and is_causal and q_len > 1:
        # sdpa's implicit causal mask would hide the prefix from early positions: spell the mask out.
        attention_mask = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril(k_len - q_len)
        attention_mask = attention_mask[None, None]
    if attention_mask is not None:
        attention_mask = _pad_last(attention_mask, n, True if attention_mask.dtype == torch.bool else 0.0)
    if kwargs.get("position_bias") is not None:
        kwargs["position_bias"] = _pad_last(kwargs["position_bias"], n, 0.0)
    key = torch.cat([prefix_key, key], dim=2)
    value = torch.cat([prefix_value, value], dim=2)
    return sdpa(module, query, key, value, attention_mask, *args, is_causal=False, **kwargs)


# Passes through untouched for any module without a prefix, so registering it globally is safe.
AttentionInterface.register("sdpa", sdpa_with_prefix)


def _head_dim(module: nn.Module) -> int:
    for attribute in ("head_dim", "attention_head_size", "key_value_proj_dim"):
        if getattr(module, attribute, None):
            return int(getattr(module, attribute))
    raise DetConfigError(f"prefix: cannot tell the head size of {type(module).__name__}")


def _key_width(module: nn.Module) -> int:
    for attribute in ("k_proj", "key", "k"):
        proj = getattr(module, attribute, None)
        if proj is not None:
            return proj.out_features
    raise DetConfigError(f"prefix: cannot find the key projection of {type(module).__name__}")


class PrefixEncoder(nn.Module):
    """The reparameterised prefix of one group of layers (the paper: no biases)."""

    def __init__(self, length: int, d_model: int, hidden: int, n_layers: int, kv_width: int):
        super().__init__()
        self.matrix = nn.Parameter(torch.randn(length, d_model) * 0.02)
        self.down = nn.Linear(d_model, hidden, bias=False)
        self.up = nn.Linear(hidden, n_layers * 2 * kv_width, bias=False)
        self.n_layers, self.kv_width = n_layers, kv_width

    def forward(self) -> torch.Tensor:
        out = self.up(torch.tanh(self.down(self.matrix)))  # (length, layers * 2 * kv)
        return out.view(out.shape[0], self.n_layers, 2, self.kv_width)


class Prefix(DeltaTuning):
    config = PrefixConfig

    def attach(self, backbone) -> None:
        pattern = self.spec["target_modules"]
        pattern = profile_for(backbone.model).attention if pattern == "auto" else pattern
        found = matching_modules(backbone.model, pattern)
        if not found:
            raise DetConfigError(f"prefix: no attention module of {backbone.name_or_path} matches {pattern}")
        groups: dict[str, list[nn.Module]] = {}
        for name, module in found:
            # seq2seq: one prefix module for the encoder and one for the decoder, as in the paper.
            group = name.split(".")[0] if name.split(".")[0] in ("encoder", "decoder") else "layers"
            groups.setdefault(group, []).append(module)
        self.attention_groups = groups  # plain dict of backbone modules: not registered as our submodules
        self.encoders = nn.ModuleDict({
            group: PrefixEncoder(self.spec["length"], backbone.hidden_size, self.spec["hidden"],
                                 len(modules), _key_width(modules[0]))
            for group, modules in groups.items()
        })
        self.head_dims = {group: _head_dim(modules[0]) for group, modules in groups.items()}

    @contextlib.contextmanager
    def active(self):
        modules = []
        try:
            for group, encoder in self.encoders.items():
                kv = encoder()  # (length, layers, 2, kv_width)
                head = self.head_dims[group]
                kv = kv.view(kv.shape[0], kv.shape[1], 2, -1, head).permute(1, 2, 3, 0, 4)  # layers, 2, H, P, d
                for module, layer_kv in zip(self.attention_groups[group], kv):
                    setattr(module, PREFIX_ATTRIBUTE, (layer_kv[0].unsqueeze(0), layer_kv[1].unsqueeze(0)))
                    modules.append(module)
            yield
        finally:
            for module in modules:
                setattr(module, PREFIX_ATTRIBUTE, None)
