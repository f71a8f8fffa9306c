"""Stage 3's intrinsic vectors of one DET trained together (issue 20): every (up-projection, lr) pair is one run,
and each training step is one forward pass over all runs (torch.func.vmap over the functional loss, as
grid_eval.stacked_scores batches the landscape's points), one backward of the summed losses and one optimizer
step per run. A run's loss depends on its own point only, so its gradient, optimizer state and trajectory are
those of the sequential loop (optimize.train_intrinsic): the same seeded start, batches, dev steps, selection
and test scoring (intrinsic.py), up to the summation order of the batched matmuls (fp32: tests/test_optimize_batched.py).
Dev scores every run's point on the sequential loop's own dev batches, stacked where a pass holds several."""
from __future__ import annotations

import torch
from torch.func import vmap

from .grid_eval import (DevSet, VectorRows, attention_for_vmap, point_metrics, points_per_pass, stacked_scores,
                        vector_rows)
from .hardware import autocast
from .intrinsic import Selection, evaluates, start_point
from .optim import make_optimizer


def batchable(model, batches: dict) -> bool:
    """Runs can share a pass: the DET is vmap-safe (its config) and every batch ranks candidates (generated texts
    have no stacked scoring)."""
    return model.det.config.vmap and all(b.scoring == "rank" for name in ("train", "dev") for b in batches[name])


def dev_scores(job, det: str, vectors: torch.Tensor | VectorRows, n_points: int, dev: DevSet, primary: str
               ) -> list[float]:
    """The primary dev metric of every vector (a (P, D) stack, or one decoded on demand), several per pass where
    a pass holds several (grid_eval.points_per_pass). Where it holds one (a CPU's 4096 rows, filled by one
    vector's 64 dev sentences), one vector at a time as the sequential loop scores: vmap would buy nothing and
    cost the fused attention kernel (measured on an AMX Xeon, bf16: 1.8x slower)."""
    if all(points_per_pass(batch, job.models[det].num_parameters, job.device) == 1 for batch in dev.batches):
        return [job.score_vector(det, vector_rows(vectors, p, p + 1)[0], dev.batches)[primary]
                for p in range(n_points)]
    scores = stacked_scores(job.models[det], vectors, n_points, dev, job.precision, job.device)
    return [metrics[primary] for metrics in point_metrics(scores, dev)]


def train_intrinsic_batched(job, det: str, ups: list, batches: dict, stage: dict, seed: int, primary: str,
                            log) -> list[dict]:
    """optimize.train_intrinsic for each up-projection in `ups`, every lr of the grid at once: one result each."""
    device, precision, model, init = job.device, job.precision, job.models[det], job.inits[det]
    ups = [up.to(device).requires_grad_(False) for up in ups]
    runs = [(u, lr) for u in range(len(ups)) for lr in stage["lrs"]]
    points = [start_point(ups[u].rank, seed, device) for u, _ in runs]
    optimizers = [make_optimizer(stage["optimizer"], [point], lr) for point, (_, lr) in zip(points, runs)]
    dev = DevSet.of_batches(batches["dev"])
    starts = [start_point(up.rank, seed, device).detach() for up in ups]  # step 0: one per subspace, every lr's
    start_devs = dev_scores(job, det, torch.stack([job.decode(det, up, start) for up, start in zip(ups, starts)]),
                            len(ups), dev, primary)
    evaluations = [[] for _ in runs]  # per run: (step, train loss, dev score, point) at each dev step
    for step, batch in enumerate(batches["train"]):
        losses_of = vmap(lambda vector: model.functional_loss(vector, batch))
        with attention_for_vmap(device), autocast(precision, device):
            losses = losses_of(torch.stack([init + ups[u](point) for (u, _), point in zip(runs, points)]))
        losses.sum().backward()
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        done = step + 1
        if evaluates(done, stage):
            kept = [point.detach().clone() for point in points]
            vectors = torch.stack([job.decode(det, ups[u], point) for (u, _), point in zip(runs, kept)])
            scores = dev_scores(job, det, vectors, len(runs), dev, primary)
            for k, (loss, score) in enumerate(zip(losses.tolist(), scores)):
                evaluations[k].append((done, loss, score, kept[k]))
    results = []
    for u, up in enumerate(ups):
        selection = Selection()  # replayed in the sequential loop's order: the start, then lr by lr, step by step
        selection.start(stage["lrs"], start_devs[u], starts[u])
        for k in (k for k, (run_up, _) in enumerate(runs) if run_up == u):
            for done, loss, score, point in evaluations[k]:
                selection.record(runs[k][1], done, loss, score, point)
            log(selection.summary(runs[k][1]))
        results.append(selection.result(job, det, up, batches, primary))
    return results
