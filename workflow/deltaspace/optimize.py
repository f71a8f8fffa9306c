"""optimize (stage 3): train only an intrinsic vector I in R^r for one DET on a task, decoding theta = init + Up(I) through
the frozen up-projection (method.md). The same loop trains in two baseline subspaces: the joint-SVD fit that
stage 2 starts from (what the joint decomposition adds) and an untrained random one (what any r directions give).
The three vectors, and every lr of the grid, train together in one forward pass per step (intrinsic_batched.py)
where the DET allows it; train_intrinsic is the one-at-a-time loop they must match."""
from __future__ import annotations

import time

import pandas as pd
import torch

from .backbones import TaskFormat
from .evaluate import predictions_table, prepare_batches
from .grid_eval import DevSet
from .hardware import autocast
from .intrinsic import Selection, evaluates, start_point
from .intrinsic_batched import batchable, dev_scores, train_intrinsic_batched
from .io import save_tensors, tensor_digest, write_csv, write_json
from .job import Job, batch_order, load_task_splits, start_job
from .optim import make_optimizer
from .tasks import improves
from .paths import Decomposition, OptimizeRun
from .projections import Fastfood
from .subspace import UpProjection, load_subspace, point_columns


def random_up_projection(learned: UpProjection | Fastfood, seed: int) -> UpProjection | Fastfood:
    """An untrained up-projection of the same shape and Frobenius norm as the learned one: the baseline that
    shows what the learned subspace adds beyond 'any r directions'. A Fastfood one gets a fresh Fastfood."""
    generator = torch.Generator().manual_seed(seed)
    if isinstance(learned, Fastfood):
        return learned.random_like(generator, learned.frobenius_norm())
    rank, dim = learned.weight.shape[1], learned.weight.shape[0]
    random = UpProjection(rank, dim)
    with torch.no_grad():
        weight = torch.randn(dim, rank, generator=generator)
        random.weight.copy_(weight * learned.weight.norm() / weight.norm())
    return random


def tokenised_batches(backbone, splits, task: str | TaskFormat, stage: dict, seed: int, device) -> dict:
    """Every batch a stage-3 job uses, tokenised once and shared by all lrs and both subspaces (a test split
    is optional: the subspace artifact's API trains on a new task's train and dev examples alone)."""
    order = batch_order(len(splits["train"]), stage["batch_size"], stage["steps"], seed)
    batches = {name: prepare_batches(backbone, splits[name], stage["eval_batch_size"], task, device)
               for name in ("dev", "test") if name in splits}
    batches["train"] = [backbone.prepare([splits["train"][i] for i in row.tolist()], task).to(device) for row in order]
    return batches


def train_intrinsic(job: Job, det: str, up: UpProjection | Fastfood, batches: dict, stage: dict, seed: int,
                    primary: str, log) -> dict:
    """For each lr of the grid: train I from the same seeded start, keep the best dev (the start's included); test
    the overall best.
    One vector at a time: the reference the batched loop (intrinsic_batched.py) must match, and the path of a DET
    or task it cannot batch."""
    device, precision, model, init = job.device, job.precision, job.models[det], job.inits[det]
    up = up.to(device).requires_grad_(False)
    selection = Selection()
    start = start_point(up.rank, seed, device).detach()
    selection.start(stage["lrs"], job.score_point(det, up, start, batches["dev"])[primary], start)
    for lr in stage["lrs"]:
        point = start_point(up.rank, seed, device)
        optimizer = make_optimizer(stage["optimizer"], [point], lr)
        for step, batch in enumerate(batches["train"]):
            with autocast(precision, device):
                loss = model.functional_loss(init + up(point), batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            if evaluates(done, stage):
                dev = job.score_point(det, up, point.detach(), batches["dev"])
                selection.record(lr, done, loss.item(), dev[primary], point)
        log(selection.summary(lr))
    return selection.result(job, det, up, batches, primary)


def best_train_point(job: Job, det: str, up: UpProjection | Fastfood, points: pd.DataFrame, batches: dict,
                     primary: str, batched: bool = False) -> dict:
    """No training: decode every training task's stage-2 point (each DET's, each seed's) through this DET, keep
    the one that scores best on this task's dev split, and test only that one (dev picks, test never does).
    batched: the points are scored on dev several per forward pass (intrinsic_batched.dev_scores)."""
    up = up.to(job.device)
    coords = point_columns(points)
    rows = list(points.itertuples(index=False))
    candidates = [torch.tensor([getattr(row, c) for c in coords], dtype=torch.float32, device=job.device)
                  for row in rows]
    if batched:
        def decoded(start: int, stop: int) -> torch.Tensor:  # on demand: fine-tuning's vectors are large
            return torch.stack([job.decode(det, up, point) for point in candidates[start:stop]])

        devs = dev_scores(job, det, decoded, len(candidates), DevSet.of_batches(batches["dev"]), primary)
    else:
        devs = [job.score_point(det, up, point, batches["dev"])[primary] for point in candidates]
    best = None
    for row, point, dev in zip(rows, candidates, devs):
        if improves(dev, None if best is None else best["dev"]):
            best = {"dev": dev, "point": point, "from": {"task": row.task, "seed": int(row.seed), "det": row.det}}
    metrics, predictions = job.score_examples(det, job.decode(det, up, best["point"]), batches["test"])
    return {"dev": best["dev"], "test": metrics[primary], "from": best["from"], "predictions": predictions}


def optimize(task: str, det: str, seed: int, spec: dict, decomposition, data, out, threads: int | None = None,
             log=print, batched: bool | None = None) -> dict:
    """Trains I* in the learned subspace and, as baselines, in the joint-SVD fit that stage 2 starts from and in
    a random subspace; also scores theta_init and the best training task's point. decomposition: decompose's
    Files (or folder); data: TaskData (or folder). Writes the OptimizeRun files `out` (or into that folder):
    the scores, the vectors and every test prediction. batched: train the three subspaces' vectors (every lr)
    in one forward pass per step (intrinsic_batched.py); None: wherever the DET and task allow it."""
    started = time.perf_counter()
    out, decomposition = OptimizeRun.of(out), Decomposition.of(decomposition)
    subspace_path, svd_subspace_path, points_path = (decomposition.subspace, decomposition.svd_subspace,
                                                     decomposition.points)
    splits, task_info = load_task_splits(data, task)
    primary = task_info.get("primary_metric", "accuracy")
    subspace, inits, meta = load_subspace(subspace_path)
    svd_subspace, svd_inits, _ = load_subspace(svd_subspace_path)
    if det not in inits:
        raise ValueError(f"{subspace_path} has no DET {det!r}; it holds {sorted(inits)}")
    if tensor_digest(svd_inits[det]) != tensor_digest(inits[det]):
        raise ValueError(f"{svd_subspace_path} and {subspace_path} come from different runs of decompose; rerun it")
    job = start_job(spec, threads, dets={det: spec["dets"][det]}, init_digests={det: tensor_digest(inits[det])},
                    source=subspace_path)
    stage = spec["optimize"]
    log(f"[optimize] task={task} det={det} r={subspace.rank} lrs={stage['lrs']} steps={stage['steps']}")
    form = job.task_format(task, task_info, splits["train"])
    batches = tokenised_batches(job.backbone, splits, form, stage, seed, job.device)
    init_metrics, init_predictions = job.score_examples(det, job.inits[det], batches["test"])
    ups = [subspace.up[det], svd_subspace.up[det], random_up_projection(subspace.up[det], seed)]
    batched = batchable(job.models[det], batches) if batched is None else batched
    if batched:
        learned, svd, random = train_intrinsic_batched(job, det, ups, batches, stage, seed, primary, log)
    else:
        learned, svd, random = (train_intrinsic(job, det, up, batches, stage, seed, primary, log) for up in ups)
    nearest = best_train_point(job, det, subspace.up[det], pd.read_csv(points_path), batches, primary, batched)
    save_tensors(out.intrinsic, {"intrinsic": learned["point"], "svd_intrinsic": svd["point"],
                                 "random_intrinsic": random["point"]},
                 {"task": task, "det": det, "seed": seed, "subspace": str(subspace_path), "lr": learned["lr"]})
    write_csv(out.predictions, predictions_table({
        "init": init_predictions, "subspace": learned["predictions"], "svd_subspace": svd["predictions"],
        "random_subspace": random["predictions"], "best_train_point": nearest["predictions"]}))
    result = {"task": task, "det": det, "seed": seed, "primary_metric": primary, "subspace": str(subspace_path),
              "svd_subspace": str(svd_subspace_path), "points": str(points_path), "predictions": str(out.predictions),
              "init_test": init_metrics[primary],
              "dev": learned["dev"], "test": learned["test"], "lr": learned["lr"], "best_step": learned["best_step"],
              "svd_dev": svd["dev"], "svd_test": svd["test"], "svd_lr": svd["lr"],
              "random_dev": random["dev"], "random_test": random["test"], "random_lr": random["lr"],
              "best_train_point_dev": nearest["dev"], "best_train_point_test": nearest["test"],
              "best_train_point_from": nearest["from"],
              "intrinsic": learned["point"].tolist(), "history": learned["history"],
              "svd_history": svd["history"], "random_history": random["history"],
              "seconds": round(time.perf_counter() - started, 2)}
    write_json(out.result, result)
    log(f"[optimize] done: test {result['test']:.4f} (init {result['init_test']:.4f}, svd subspace "
        f"{result['svd_test']:.4f}, random subspace {result['random_test']:.4f}, best train point "
        f"{result['best_train_point_test']:.4f})")
    return result
