"""Stage 3: train only an intrinsic vector I in R^r for one DET on a task, decoding theta = init + Up(I) through
the frozen up-projection (method.md). The same loop trains in an untrained random subspace as a baseline."""
from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .backbones import load_backbone
from .dets import build_delta_model
from .evaluate import evaluate, prepare_batches
from .files import RESULT_FILE
from .hardware import autocast, job_setup
from .io import save_tensors, tensor_digest, write_json
from .optim import make_optimizer
from .projections import Fastfood
from .stage1 import batch_order, load_task_splits
from .stage2 import check_inits, load_subspace
from .subspace import UpProjection

VECTOR_FILE = "intrinsic.safetensors"


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


def train_intrinsic(model, up: UpProjection | Fastfood, init: torch.Tensor, batches: dict, stage: dict, seed: int,
                    primary: str, precision: str, device, log) -> dict:
    """For each lr of the grid: train I from the same seeded start, keep the best dev; test the overall best."""
    up = up.to(device).requires_grad_(False)

    def dev_score(point) -> dict:
        with torch.no_grad(), autocast(precision, device):
            vector = init + up(point)
            return evaluate(lambda b: model.functional_scores(vector, b), batches["dev"])

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
                dev = dev_score(point.detach())
                all_history.append({"lr": lr, "step": done, "train_loss": loss.item(), "dev": dev[primary]})
                if best is None or dev[primary] > best["dev"]:
                    best = {"dev": dev[primary], "lr": lr, "step": done, "point": point.detach().clone()}
        log(f"[subspace_train] lr {lr}: best dev so far {best['dev']:.4f} (lr {best['lr']}, step {best['step']})")
    test = None
    if "test" in batches:
        with torch.no_grad(), autocast(precision, device):
            vector = init + up(best["point"])
            test = evaluate(lambda b: model.functional_scores(vector, b), batches["test"])
    return {"dev": best["dev"], "test": None if test is None else test[primary], "test_metrics": test,
            "lr": best["lr"], "best_step": best["step"], "point": best["point"].cpu(), "history": all_history}


def subspace_train(task: str, det: str, seed: int, spec: dict, subspace_path: str | Path, data_dir: str | Path,
                   out_dir: str | Path, threads: int | None = None, log=print) -> dict:
    """Writes result.json (learned and random subspace scores) and intrinsic.safetensors (I*) into out_dir."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    device, precision = job_setup(spec, threads)
    splits, task_info = load_task_splits(Path(data_dir), task)
    primary = task_info.get("primary_metric", "accuracy")
    subspace, inits, meta = load_subspace(subspace_path)
    if det not in inits:
        raise ValueError(f"{subspace_path} has no DET {det!r}; it holds {sorted(inits)}")
    model = build_delta_model(load_backbone(spec["backbone"], device), spec["dets"][det], spec["init_seed"])
    check_inits({det: model}, {det: tensor_digest(inits[det])}, subspace_path)
    init = model.vector().to(device)
    stage = spec["stage3"]
    log(f"[subspace_train] task={task} det={det} r={subspace.rank} lrs={stage['lrs']} steps={stage['steps']}")
    batches = tokenised_batches(model.backbone, splits, task, stage, seed, device)
    learned = train_intrinsic(model, subspace.up[det], init, batches, stage, seed, primary, precision, device, log)
    random = train_intrinsic(model, random_up_projection(subspace.up[det], seed), init, batches, stage, seed,
                             primary, precision, device, log)
    save_tensors(out_dir / VECTOR_FILE, {"intrinsic": learned["point"], "random_intrinsic": random["point"]},
                 {"task": task, "det": det, "seed": seed, "subspace": str(subspace_path), "lr": learned["lr"]})
    result = {"task": task, "det": det, "seed": seed, "primary_metric": primary, "subspace": str(subspace_path),
              "dev": learned["dev"], "test": learned["test"], "lr": learned["lr"], "best_step": learned["best_step"],
              "random_dev": random["dev"], "random_test": random["test"], "random_lr": random["lr"],
              "intrinsic": learned["point"].tolist(), "history": learned["history"],
              "random_history": random["history"], "seconds": round(time.perf_counter() - started, 2)}
    write_json(out_dir / RESULT_FILE, result)
    log(f"[subspace_train] done: test {result['test']:.4f} (random subspace {result['random_test']:.4f})")
    return result
