"""Tiny randomly initialised backbones of each kind, saved with save_pretrained and loaded back by path,
as a hub model would be (no hub is reachable here)."""
from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (BertConfig, BertModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast,
                          T5Config, T5ForConditionalGeneration)

CORPUS = [
    "this movie was great and the acting was excellent",
    "terrible plot, awful acting, a waste of time",
    "free entry win a prize call now to claim",
    "are we still meeting for lunch tomorrow",
    "positive negative spam normal message sarcastic disaster",
    "what is the capital of france ? who wrote hamlet ?",
] * 4


def save_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    raw = Tokenizer(models.WordLevel(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    tok.save_pretrained(folder)
    return tok


def save_tiny(kind: str, folder: Path, seed: int = 0) -> Path:
    import torch

    folder = Path(folder)
    tok = save_tokenizer(folder)
    vocab = max(len(tok), 64)
    torch.manual_seed(seed)
    if kind == "encoder":
        model = BertModel(BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=128))
    elif kind == "seq2seq":
        model = T5ForConditionalGeneration(T5Config(vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                                    num_heads=4, feed_forward_proj="gated-gelu",
                                                    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))
    elif kind == "causal":
        model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             max_position_embeddings=128, pad_token_id=0, eos_token_id=1,
                                             bos_token_id=1))
    else:
        raise ValueError(kind)
    model.save_pretrained(folder)
    return folder


TINY_KINDS = ("encoder", "seq2seq", "causal")
