"""The DET contract (DeltaTuning) and the model that runs a backbone with a DET's tensors given as one flat vector."""
from __future__ import annotations

import contextlib
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..backbones import Backbone, ScoringBatch
from .config import DetConfig, DetConfigError


class DeltaTuning(nn.Module):
    """One delta-tuning method: the torch half of a DET folder (model.py); `config` is its declaration (config.py:
    options with defaults and help, PEFT type, vmap support). What every stage relies on:

    - Solution vector: `attach(backbone)` adds the DET's tensors to the backbone, whose parameters are all frozen
      first. The tensors left with requires_grad=True are the DET, and its solution vector is them flattened and
      concatenated in DeltaModel.named_parameters() order: the backbone's modules in their registration order
      (a replaced module keeps its place), then the DET's own submodules. Nothing may re-create or reorder them
      after `attach`.
    - theta_init: `attach` runs under torch.manual_seed(init_seed) in a forked RNG (DeltaModel), so random inits
      draw from torch's global generator there and the same spec, backbone and init_seed give the same vector
      bit for bit; every later stage adds its deltas to it. `init_seed` may change nothing (fine-tuning, BitFit).
    - Functional forward: DeltaModel.functional_scores(vector, batch) runs the backbone with the DET's tensors
      replaced by pieces of `vector` through torch.func.functional_call, differentiably: stage 1 passes a
      Parameter, stages 2 and 3 pass init + Up(point) and need gradients with respect to the point, transfer and
      the landscape score many vectors. So the forward reads its tensors as module attributes at call time (no
      copy cached at `attach`, nothing derived from them outside `forward`/`active()`) and never writes to them.
      The hooks: `input_prefix()` returns embeddings prepended to the input (prompt tuning); `active()` is the
      context in which the backbone forward sees the DET (prefix tuning) and undoes its effect on exit.
    - vmap: the landscape (grid_eval.stacked_scores) runs functional_scores under torch.func.vmap over a (P, D)
      stack of vectors with one shared, unbatched batch, under autocast where the precision is bf16. With
      `config.vmap = True` (the default) the forward must be vmap-safe: no Python branching, .item() or .tolist()
      on values computed from the DET's tensors, no in-place write of them into an unbatched tensor
      (buffer.copy_(p), x[i] = p), no random ops, and no tensor derived from them kept after the call (`active()`
      resets what it sets). Ops without a vmap batching rule still run, looping per point. A DET that cannot meet
      this declares `vmap = False` in its config.py; the landscape then scores it one vector per forward pass.
    - Where it attaches: through the backbone family's profile (dets/architectures.py, which a new model family
      touches) or a module-name option of its own, so a new DET needs no new profile field.
    - Export: a DET whose config declares `peft_type` implements `peft_adapter` (deltaspace.export).
    """

    config: ClassVar[type[DetConfig]]

    def __init__(self, spec: dict):
        super().__init__()
        allowed = self.config.allowed_keys()
        unknown = set(spec) - allowed
        if unknown:
            raise DetConfigError(
                f"DET method {self.method!r}: unknown option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        self.spec = {**self.config.defaults(), **spec, "method": self.method}

    @property
    def method(self) -> str:
        return self.config.method

    def attach(self, backbone: Backbone) -> None:
        raise NotImplementedError

    def input_prefix(self) -> torch.Tensor | None:
        """A (P, d) block of embeddings prepended to the input (prompt tuning)."""
        return None

    def active(self):
        """Context in which the backbone forward sees this DET (prefix tuning sets per-layer keys/values)."""
        return contextlib.nullcontext()

    def peft_adapter(self, backbone: Backbone):
        """(PEFT config, tensors keyed as PeftModel.from_pretrained loads them) of the DET's current tensors."""
        raise NotImplementedError(f"DET {self.method!r} declares no peft_type")


OUTPUTS = ("predict", "scores", "loss", "generate", "tokens")


class DeltaModel(nn.Module):
    """Backbone + DET. `forward(batch, output)` scores candidates, gives the training loss or generates;
    the functional_* methods do the same with the DET's tensors replaced by a flat vector, differentiably
    (stage 2/3 and evaluation of many points)."""

    def __init__(self, backbone: Backbone, det: DeltaTuning, init_seed: int):
        super().__init__()
        self.backbone = backbone
        self.det = det
        self.init_seed = init_seed
        for p in backbone.parameters():
            p.requires_grad_(False)
        # The seed fixes theta_init, which every later stage adds its deltas to.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            det.attach(backbone)
        self.tensor_names = [n for n, p in self.named_parameters() if p.requires_grad]
        if not self.tensor_names:
            raise DetConfigError(f"DET {det.method!r} attached no trainable tensor to {backbone.name_or_path}")
        params = dict(self.named_parameters())
        expected = det.spec.get("expected_params")
        count = sum(params[n].numel() for n in self.tensor_names)
        if expected is not None and count != expected:
            raise DetConfigError(f"DET {det.method!r} {det.spec} has {count} parameters on "
                                 f"{backbone.name_or_path}; the config's expected_params says {expected}")
        self.tensor_shapes = [tuple(params[n].shape) for n in self.tensor_names]
        self.tensor_sizes = [math.prod(s) for s in self.tensor_shapes]

    @property
    def num_parameters(self) -> int:
        return sum(self.tensor_sizes)

    def trainable_parameters(self) -> list[nn.Parameter]:
        params = dict(self.named_parameters())
        return [params[n] for n in self.tensor_names]

    def forward(self, batch: ScoringBatch, output: str = "predict"):
        """OUTPUTS: "predict" what evaluation reads in the batch's scoring mode (rank: scores, generate: texts);
        "scores" (B, C) candidate scores; "loss" the training loss of the batch's scoring mode (cross-entropy over
        the scores, or the gold output's LM loss); "generate" the greedy output texts; "tokens" their token ids."""
        if output == "predict":
            output = "generate" if batch.scoring == "generate" else "scores"
        with self.det.active():
            prefix = self.det.input_prefix()
            if output == "scores":
                return self.backbone.score(batch, prefix)
            if output == "loss":
                if batch.scoring == "generate":
                    return self.backbone.lm_loss(batch, prefix)
                return F.cross_entropy(self.backbone.score(batch, prefix), batch.labels)
            if output == "generate":
                return self.backbone.generate(batch, prefix)
            if output == "tokens":
                return self.backbone.generate_tokens(batch, prefix)
        raise ValueError(f"output={output!r}: allowed are {', '.join(OUTPUTS)}")

    def vector(self) -> torch.Tensor:
        """The DET's current tensors flattened in `tensor_names` order (a detached fp32 copy)."""
        return torch.cat([p.detach().reshape(-1).float() for p in self.trainable_parameters()])

    def unflatten(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        if vector.numel() != self.num_parameters:
            raise ValueError(f"vector has {vector.numel()} numbers; DET {self.det.method!r} needs {self.num_parameters}")
        pieces = torch.split(vector.reshape(-1), self.tensor_sizes)
        return {n: t.view(s) for n, t, s in zip(self.tensor_names, pieces, self.tensor_shapes)}

    @torch.no_grad()
    def load_vector(self, vector: torch.Tensor) -> None:
        for p, t in zip(self.trainable_parameters(), self.unflatten(vector).values()):
            p.copy_(t.to(p.dtype))

    def functional_scores(self, vector: torch.Tensor, batch: ScoringBatch) -> torch.Tensor:
        return functional_call(self, self.unflatten(vector), (batch,), strict=False)

    def functional_predict(self, vector: torch.Tensor, batch: ScoringBatch):
        """What evaluation reads with the DET's tensors set to `vector`: candidate scores, or generated texts."""
        return functional_call(self, self.unflatten(vector), (batch, "predict"), strict=False)

    def functional_loss(self, vector: torch.Tensor, batch: ScoringBatch) -> torch.Tensor:
        """The batch's training loss with the DET's tensors set to `vector`, differentiably."""
        return functional_call(self, self.unflatten(vector), (batch, "loss"), strict=False)

    def functional_generate(self, vector: torch.Tensor, batch: ScoringBatch) -> list[str]:
        """Greedy output texts with the DET's tensors set to `vector` (prefix tuning stays active throughout)."""
        return functional_call(self, self.unflatten(vector), (batch, "generate"), strict=False)

    def functional_tokens(self, vector: torch.Tensor, batch: ScoringBatch) -> list[list[int]]:
        """functional_generate's token ids, up to EOS (what the generation benchmark compares)."""
        return functional_call(self, self.unflatten(vector), (batch, "tokens"), strict=False)
