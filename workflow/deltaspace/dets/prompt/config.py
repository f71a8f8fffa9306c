"""The prompt-tuning DET's declaration (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass

from ...options import option
from ..config import DetConfig


@dataclass(kw_only=True)
class PromptConfig(DetConfig):
    """Prompt tuning: `length` trainable embeddings prepended to the input, initialised from randomly drawn
    vocabulary embeddings (seeded).

    Exported as PEFT PROMPT_TUNING, which prepends its virtual-token embeddings to the input embeddings and extends
    the attention mask as ours does (seq2seq: encoder input only, hence num_transformer_submodules=1). Our encoder
    kind embeds the answer candidates without the prompt: embed them with `peft_model.get_base_model()`, which
    prompt tuning leaves untouched (PEFT 0.21's disable_adapter() fails for prompt tuning on a bare encoder)."""

    method = "prompt"
    peft_type = "PROMPT_TUNING"

    length: int = option(20, "prompt embeddings prepended to the input", minimum=1)
