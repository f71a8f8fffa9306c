"""Scoring many vectors of one DET on one dev set: the landscape grid (or any batch of subspace points).

Two ways, same scores:
- `reference_scores`: one vector at a time, fp32, the plain functional forward on the examples in file order.
  Kept as the yardstick.
- `stacked_scores` (shipped): the examples are tokenised once, sorted by length and cut into batches of
  (nearly) equal length (`tokenise_by_length`), so almost no padding is computed (a dev set of real sentences
  pads 1.6-1.8x in file order); then several vectors go through each forward pass at once (torch.func.vmap
  over the functional forward), which refills the small batches: the frozen backbone's matmuls become one
  large matmul over all the points' rows (which threads split well), what no vector touches (embeddings; the
  answers' encodings under prompt tuning) is computed once, and the DET's own weights (LoRA, adapter, prefix
  keys/values, prompts, bias deltas) are batched per point. A DET whose config declares vmap = False gets the
  same batches one vector per pass (`stacked_forward`).
  What the device decides: how many rows one pass holds (`TARGET_TOKENS`), the precision (bf16 only where
  the hardware runs it natively, hardware.resolve_precision), and the attention kernel: on CUDA the fused
  kernels have vmap batching rules; on CPU the fused kernel has none (vmap would loop over the points), so
  attention runs in its math form there, which vmap batches.

Agreement: in fp32 the two differ only by summation order (batch shapes differ), |score difference| well
below `SCORE_TOLERANCE["fp32"]`; a dev metric can then differ only through an example whose two best
candidates lie within that tolerance of each other (`metric_tolerance` counts them; tests/test_landscape.py
and benchmarks/landscape_grid.py check both).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch.func import vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from .backbones import Backbone, ScoringBatch
from .hardware import autocast
from .evaluate import best_candidates
from .tasks import Example, Scores

# Token rows per forward pass the stacked path aims at: enough for large matmuls, little enough for memory
# (on CPU, 2048-8192 ran alike; larger passes only add page faults from fresh large allocations).
TARGET_TOKENS = {"cpu": 4096, "cuda": 65536}
# A length bucket holds at most this many examples (memory of one point's pass on large dev sets).
MAX_BUCKET_EXAMPLES = 256
# Stacked vectors per pass are also capped by their own size (fine-tuning's vectors are the backbone's size).
MAX_STACKED_VECTOR_BYTES = 2**30
# |stacked - reference| bound on every candidate score, by the stacked path's precision.
SCORE_TOLERANCE = {"fp32": 1e-3, "bf16": 0.25}

VectorRows = Callable[[int, int], torch.Tensor]  # (start, stop) -> those vectors, decoded on demand


@dataclass
class DevSet:
    """A split tokenised once: its batches, and where each scored row sits among the examples."""

    batches: list[ScoringBatch]
    order: torch.Tensor  # order[k] = index (in the examples given) of the k-th row over all batches
    labels: torch.Tensor  # gold candidate of each example, in the order given
    n_candidates: int
    examples: tuple[Example, ...] = ()  # in the order given: their candidates and gold texts, for the metrics

    @property
    def n_examples(self) -> int:
        return len(self.labels)

    @classmethod
    def of_batches(cls, batches: list[ScoringBatch]) -> "DevSet":
        """A whole split already cut by evaluate.prepare_batches (each batch knowing its examples' positions):
        stage 3 scores its vectors on the very batches its sequential loop scores one vector at a time on."""
        ids = [i for batch in batches for i in batch.example_ids]
        by_id = dict(zip(ids, (example for batch in batches for example in batch.examples)))
        examples = tuple(by_id[i] for i in range(len(ids)))
        return cls(batches, torch.tensor(ids), torch.tensor([e.label for e in examples]),
                   max(len(e.candidates) for e in examples), examples)


def tokenise(backbone: Backbone, examples: list[Example], task: str, device, batch_size: int) -> DevSet:
    """Batches of `batch_size` examples in the given order (the reference's)."""
    groups = [list(range(k, min(k + batch_size, len(examples)))) for k in range(0, len(examples), batch_size)]
    return _devset(backbone, examples, task, device, groups)


def tokenise_by_length(backbone: Backbone, examples: list[Example], task: str, device) -> DevSet:
    """Examples sorted by input length, shortest first, cut where one more example would cost more tokens
    (padding included) than starting a new batch; a new batch costs its answers or targets again."""
    if not examples:
        raise ValueError(f"task {task!r}: no dev examples to evaluate on")
    order = backbone.order_by_input_length(examples, task)

    def cost(group: list[int]) -> int:
        return tokens_per_point(backbone.prepare([examples[i] for i in group], task))

    groups, current, current_cost = [], [order[0]], cost(order[:1])
    for i in order[1:]:
        merged = cost(current + [i])
        if len(current) < MAX_BUCKET_EXAMPLES and merged <= current_cost + cost([i]):
            current, current_cost = current + [i], merged
        else:
            groups.append(current)
            current, current_cost = [i], cost([i])
    return _devset(backbone, examples, task, device, groups + [current])


def _devset(backbone: Backbone, examples: list[Example], task: str, device, groups: list[list[int]]) -> DevSet:
    if not examples:
        raise ValueError(f"task {task!r}: no dev examples to evaluate on")
    batches = [backbone.prepare([examples[i] for i in group], task).to(device) for group in groups]
    return DevSet(batches, torch.tensor([i for group in groups for i in group]),
                  torch.tensor([e.label for e in examples]), max(len(e.candidates) for e in examples),
                  tuple(examples))


def vector_rows(vectors: torch.Tensor | VectorRows, start: int, stop: int) -> torch.Tensor:
    return vectors[start:stop] if isinstance(vectors, torch.Tensor) else vectors(start, stop)


def _in_example_order(per_batch: list[torch.Tensor], devset: DevSet) -> torch.Tensor:
    """(P, N, C): the batches' (P, B, C_b) scores joined, padded to C with -inf, rows back in example order."""
    padded = [torch.nn.functional.pad(s.float(), (0, devset.n_candidates - s.shape[-1]), value=float("-inf"))
              for s in per_batch]
    joined = torch.cat(padded, dim=1)
    out = torch.empty_like(joined)
    out[:, devset.order.to(joined.device)] = joined
    return out.cpu()


@torch.no_grad()
def reference_scores(model, vectors: torch.Tensor | VectorRows, n_points: int, devset: DevSet) -> torch.Tensor:
    """(P, N, C) candidate scores: one vector at a time, fp32, the plain functional forward."""
    points = []
    for p in range(n_points):
        vector = vector_rows(vectors, p, p + 1)[0]
        points.append([model.functional_scores(vector, b).unsqueeze(0) for b in devset.batches])
    return torch.cat([_in_example_order(per_batch, devset) for per_batch in points])


def tokens_per_point(batch: ScoringBatch) -> int:
    """Token rows one vector's forward pass over this batch processes (inputs, and answers or targets)."""
    return sum(t.numel() for name, t in batch.tensors.items() if name.endswith("_ids"))


def points_per_pass(batch: ScoringBatch, vector_numel: int, device: torch.device, cap: int | None = None) -> int:
    """How many vectors to stack for this batch: TARGET_TOKENS rows per pass, within memory, at most `cap`."""
    by_tokens = TARGET_TOKENS["cuda" if device.type == "cuda" else "cpu"] // max(1, tokens_per_point(batch))
    by_memory = MAX_STACKED_VECTOR_BYTES // (4 * vector_numel)
    return max(1, min(by_tokens, by_memory, cap or by_tokens))


def attention_for_vmap(device: torch.device):
    """CPU: the math attention, which vmap batches (the fused CPU kernel has no batching rule and would loop)."""
    return sdpa_kernel(SDPBackend.MATH) if device.type == "cpu" else contextlib.nullcontext()


def stacked_forward(model, batch: ScoringBatch) -> Callable[[torch.Tensor], torch.Tensor]:
    """(P, D) vectors -> (P, B, C) scores: vmap over the functional forward, or one vector at a time for a DET
    whose config declares vmap = False (dets/base.py says what vmap asks of a DET)."""
    if model.det.config.vmap:
        return vmap(lambda vector: model.functional_scores(vector, batch))
    return lambda vectors: torch.stack([model.functional_scores(vector, batch) for vector in vectors])


@torch.no_grad()
def stacked_scores(model, vectors: torch.Tensor | VectorRows, n_points: int, devset: DevSet, precision: str,
                   device: torch.device, max_points_per_pass: int | None = None) -> torch.Tensor:
    """(P, N, C) candidate scores, several vectors per forward pass (see the module's docstring)."""
    per_batch = []
    for batch in devset.batches:
        stack = points_per_pass(batch, model.num_parameters, device, max_points_per_pass)
        forward = stacked_forward(model, batch)
        chunks = []
        for start in range(0, n_points, stack):
            chunk = vector_rows(vectors, start, min(n_points, start + stack)).to(device)
            with attention_for_vmap(device), autocast(precision, device):
                chunks.append(forward(chunk).float())
        per_batch.append(torch.cat(chunks))
    return _in_example_order(per_batch, devset)


def point_metrics(scores: torch.Tensor, gold: DevSet | torch.Tensor,
                  metrics: Sequence[str] = ("accuracy",)) -> list[Scores]:
    """The metrics (tasks.Scores: `metrics`, and any other when read) of every point from its (P, N, C) scores,
    over texts: each example's best candidate against its gold texts (`gold`: the DevSet scored).
    Given only the gold candidate indices (a tensor), the indices themselves stand for the texts: right for
    metrics over labels (accuracy, macro_f1) on a fixed candidate set, not for text-overlap metrics."""
    if isinstance(gold, DevSet):
        references = [example.references for example in gold.examples]
        return [Scores(best_candidates(row, gold.examples), references, metrics) for row in scores]
    references = [(str(label),) for label in gold.tolist()]
    return [Scores([str(best) for best in row.argmax(-1).tolist()], references, metrics) for row in scores]


def metric_tolerance(reference: torch.Tensor, precision: str) -> list[int]:
    """Per point: how many examples have their two best reference candidates within SCORE_TOLERANCE of each
    other, i.e. how many predictions another summation order may flip. 0 means the metric must agree exactly."""
    top2 = reference.topk(2, dim=-1).values if reference.shape[-1] > 1 else None
    if top2 is None:
        return [0] * reference.shape[0]
    return ((top2[..., 0] - top2[..., 1]) <= SCORE_TOLERANCE[precision]).sum(-1).tolist()
