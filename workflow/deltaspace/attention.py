"""The attention function every backbone runs: transformers' sdpa, registered under its own name ("sdpa"), with
query, key and value brought to one dtype first. Under bf16 autocast inside vmap (stage 3, the landscape) rotary
embeddings leave q and k in fp32 while v can come out of its projection in bf16, and sdpa refuses mixed dtypes.
A DET that changes attention (prefix tuning) registers its own wrapper around `sdpa` under the same name."""
from __future__ import annotations

from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward


def sdpa(module, query, key, value, attention_mask, *args, **kwargs):
    if key.dtype != query.dtype or value.dtype != query.dtype:
        key, value = key.to(query.dtype), value.to(query.dtype)
    return sdpa_attention_forward(module, query, key, value, attention_mask, *args, **kwargs)


AttentionInterface.register("sdpa", sdpa)
