"""The DET contract and the model that runs a backbone with a DET's tensors given as one flat vector."""
from __future__ import annotations

import contextlib
import math
from typing import ClassVar

import torch
from torch import nn
from torch.func import functional_call

from ..backbones import Backbone, ScoringBatch


class DetConfigError(ValueError):
    pass


# Every DET accepts these: its own learning rate, and a parameter count to assert (the paper preset's sizes).
COMMON_OPTIONS = {"method", "lr", "expected_params"}


class DeltaTuning(nn.Module):
    """One delta-tuning method. Subclasses implement `attach`; optional hooks shape the forward pass.

    Trainable tensors are whatever `attach` leaves with requires_grad=True (the backbone is frozen first),
    so the solution vector's layout follows the model's own parameter order.
    """

    method: ClassVar[str]
    options: ClassVar[dict] = {}  # option name -> default

    def __init__(self, spec: dict):
        super().__init__()
        unknown = set(spec) - set(self.options) - COMMON_OPTIONS
        if unknown:
            raise DetConfigError(
                f"DET method {self.method!r}: unknown option(s) {sorted(unknown)}; allowed: {sorted(self.options)}"
            )
        self.spec = {**self.options, **spec, "method": self.method}

    def attach(self, backbone: Backbone) -> None:
        raise NotImplementedError

    def input_prefix(self) -> torch.Tensor | None:
        """A (P, d) block of embeddings prepended to the input (prompt tuning)."""
        return None

    def active(self):
        """Context in which the backbone forward sees this DET (prefix tuning sets per-layer keys/values)."""
        return contextlib.nullcontext()


class DeltaModel(nn.Module):
    """Backbone + DET. `forward(batch)` scores candidates; `functional_scores(vector, batch)` does the same
    with the DET's tensors replaced by a flat vector, differentiably (stage 2/3 and evaluation of many points)."""

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

    def forward(self, batch: ScoringBatch) -> torch.Tensor:
        with self.det.active():
            return self.backbone.score(batch, self.det.input_prefix())

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
