"""optimize (stage 3): train only an intrinsic vector I in R^r for one DET on a task, decoding theta = init + Up(I) through
the frozen up-projection (method.md). The same loop trains in an untrained random subspace as a baseline."""
from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .evaluate import prepare_batches
from .hardware import autocast
from .io import save_tensors, tensor_digest, write_json
from .job import Job, batch_order, load_task_splits, start_job
from .optim import make_optimizer
from .paths import OptimizeRun
from .projections import Fastfood
from .subspace import UpProjection, load_subspace


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


def tokenised_batches(backbone, splits, task: str, stage: dict, seed: int, device) -> dict:
    """Every batch a stage-3 job uses, tokenised once and shared by all lrs and both subspaces (a test split
    is optional: the subspace artifact's API trains on a new task's train and dev examples alone)."""
    order = batch_order(len(splits["train"]), stage["batch_size"], stage["steps"], seed)
    batches = {name: prepare_batches(backbone, splits[name], stage["eval_batch_size"], task, device)
               for name in ("dev", "test") if name in splits}
    batches["train"] = [backbone.prepare([splits["train"][i] for i in row.tolist()], task).to(device) for row in order]
    return batches


def train_intrinsic(job: Job, det: str, up: UpProjection | Fastfood, batches: dict, stage: dict, seed: int,
                    primary: str, log) -> dict:
    """For each lr of the grid: train I from the same seeded start, keep the best dev; test the overall best."""
    device, precision, model, init = job.device, job.precision, job.models[det], job.inits[det]
    up = up.to(device).requires_grad_(False)
    best, all_history = None, []
    for lr in stage["lrs"]:
        start = torch.randn(up.rank, generator=torch.Generator().manual_seed(seed)) * 0.02
        point = start.to(device).requires_grad_(True)
        optimizer = make_optimizer(stage["optimizer"], [point], lr)
        for step, batch in enumerate(batches["train"]):
            with autocast(precision, device):
                loss = F.cross_entropy(model.functional_scores(init + up(point), batch), batch.labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            if done % stage["eval_every"] == 0 or done == stage["steps"]:
                dev = job.score_point(det, up, point.detach(), batches["dev"])
                all_history.append({"lr": lr, "step": done, "train_loss": loss.item(), "dev": dev[primary]})
                if best is None or dev[primary] > best["dev"]:
                    best = {"dev": dev[primary], "lr": lr, "step": done, "point": point.detach().clone()}
        log(f"[optimize] lr {lr}: best dev so far {best['dev']:.4f} (lr {best['lr']}, step {best['step']})")
    test = job.score_point(det, up, best["point"], batches["test"]) if "test" in batches else None
    return {"dev": best["dev"], "test": None if test is None else test[primary], "test_metrics": test,
            "lr": best["lr"], "best_step": best["step"], "point": best["point"].cpu(), "history": all_history}


def optimize(task: str, det: str, seed: int, spec: dict, subspace_path: str | Path, data, out,
             threads: int | None = None, log=print) -> dict:
    """Trains I* in the learned and in a random subspace on `task` (data: TaskData or folder); writes the
    OptimizeRun files `out` (or into that folder): the result (learned and random scores) and the vectors."""
    started = time.perf_counter()
    out = OptimizeRun.of(out)
    splits, task_info = load_task_splits(data, task)
    primary = task_info.get("primary_metric", "accuracy")
    subspace, inits, meta = load_subspace(subspace_path)
    if det not in inits:
        raise ValueError(f"{subspace_path} has no DET {det!r}; it holds {sorted(inits)}")
    job = start_job(spec, threads, dets={det: spec["dets"][det]}, init_digests={det: tensor_digest(inits[det])},
                    source=subspace_path)
    stage = spec["optimize"]
    log(f"[optimize] task={task} det={det} r={subspace.rank} lrs={stage['lrs']} steps={stage['steps']}")
    batches = tokenised_batches(job.backbone, splits, task, stage, seed, job.device)
    learned = train_intrinsic(job, det, subspace.up[det], batches, stage, seed, primary, log)
    random = train_intrinsic(job, det, random_up_projection(subspace.up[det], seed), batches, stage, seed, primary, log)
    save_tensors(out.intrinsic, {"intrinsic": learned["point"], "random_intrinsic": random["point"]},
                 {"task": task, "det": det, "seed": seed, "subspace": str(subspace_path), "lr": learned["lr"]})
    result = {"task": task, "det": det, "seed": seed, "primary_metric": primary, "subspace": str(subspace_path),
              "dev": learned["dev"], "test": learned["test"], "lr": learned["lr"], "best_step": learned["best_step"],
              "random_dev": random["dev"], "random_test": random["test"], "random_lr": random["lr"],
              "intrinsic": learned["point"].tolist(), "history": learned["history"],
              "random_history": random["history"], "seconds": round(time.perf_counter() - started, 2)}
    write_json(out.result, result)
    log(f"[optimize] done: test {result['test']:.4f} (random subspace {result['random_test']:.4f})")
    return result
