"""Stage 1: train one DET on one task in its own space; keep the best dev checkpoint; save its delta.

Reads top to bottom like a plain training loop. A checkpoint after every dev evaluation lets a killed job
resume, and the data order is a fixed function of the seed, so a resumed run ends with the same numbers.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .backbones import load_backbone
from .dets import build_delta_model
from .evaluate import evaluate, prepare_batches
from .files import CHECKPOINT_FILE, DELTA_FILE, METRICS_FILE
from .hardware import autocast, job_setup
from .io import config_digest, read_json, save_checkpoint, save_tensors, tensor_digest, write_json
from .optim import make_optimizer
from .tasks import SPLIT_NAMES, TASK_SUMMARY_FILE, read_split



def batch_order(n_examples: int, batch_size: int, steps: int, seed: int) -> torch.Tensor:
    """(steps, batch_size) example indices: epochs of seeded permutations, fixed before training starts."""
    generator = torch.Generator().manual_seed(seed)
    needed = steps * batch_size
    epochs = -(-needed // n_examples)
    order = torch.cat([torch.randperm(n_examples, generator=generator) for _ in range(epochs)])
    return order[:needed].view(steps, batch_size)


def load_task_splits(data_dir: Path, task: str):
    splits = {name: read_split(data_dir / f"{name}.jsonl") for name in SPLIT_NAMES}
    for name, examples in splits.items():
        if not examples:
            raise ValueError(f"task {task!r}: split {data_dir / (name + '.jsonl')} is empty; rerun prepare_task")
    return splits, read_json(data_dir / TASK_SUMMARY_FILE, what=f"task {task!r} summary")


def train_det(task: str, det_name: str, seed: int, spec: dict, data_dir: str | Path, out_dir: str | Path,
              checkpoint_dir: str | Path, threads: int | None = None, log=print, on_checkpoint=None) -> dict:
    """Train `spec["det"]` on `task`; writes delta.safetensors and metrics.json into out_dir."""
    started = time.perf_counter()
    data_dir, out_dir, checkpoint_dir = Path(data_dir), Path(out_dir), Path(checkpoint_dir)
    device, precision = job_setup(spec, threads)
    training, det_spec = spec["training"], spec["det"]
    steps, batch_size, eval_every = training["steps"], training["batch_size"], training["eval_every"]
    splits, task_info = load_task_splits(data_dir, task)
    primary = task_info.get("primary_metric", "accuracy")
    torch.manual_seed(seed)

    backbone = load_backbone(spec["backbone"], device)
    model = build_delta_model(backbone, det_spec, spec["init_seed"])
    init_vector = model.vector()
    optimizer = make_optimizer(training["optimizer"], model.trainable_parameters(), det_spec.get("lr", training["lr"]))
    eval_batches = {name: prepare_batches(backbone, splits[name], training["eval_batch_size"], task, device)
                    for name in ("dev", "test")}
    order = batch_order(len(splits["train"]), batch_size, steps, seed)
    digest = config_digest({"spec": spec, "task": task, "seed": seed, "data": task_info.get("files")})
    log(f"[train_det] task={task} det={det_name} method={det_spec['method']} params={model.num_parameters} "
        f"device={device} precision={precision} steps={steps} batch={batch_size}")

    def dev_score() -> dict:
        with autocast(precision, device):
            return evaluate(model, eval_batches["dev"])

    checkpoint_path = checkpoint_dir / CHECKPOINT_FILE
    state = None
    if checkpoint_path.exists():
        try:
            state = torch.load(checkpoint_path, weights_only=True)
        except Exception as err:  # an unreadable checkpoint costs a restart, never a wrong result
            log(f"[train_det] ignoring unreadable checkpoint {checkpoint_path}: {err}")
            state = {}
        if state.get("digest") != digest:
            if state:
                log(f"[train_det] ignoring checkpoint {checkpoint_path}: written for other settings")
            state = None
    if state is None:
        state = {"step": 0, "best_dev": None, "best_step": 0, "best_vector": init_vector, "history": [],
                 "init_dev": dev_score(), "digest": digest, "losses": []}
    else:
        model.load_vector(state["vector"])
        optimizer.load_state_dict(state["optimizer"])
        log(f"[train_det] resumed from {checkpoint_path} at step {state['step']}")

    model.train()
    for step in range(state["step"], steps):
        batch = backbone.prepare([splits["train"][i] for i in order[step].tolist()], task).to(device)
        with autocast(precision, device):
            loss = F.cross_entropy(model(batch), batch.labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state["losses"].append(loss.item())
        done = step + 1
        if done % eval_every == 0 or done == steps:
            dev = dev_score()
            train_loss = sum(state["losses"]) / len(state["losses"])
            state["history"].append({"step": done, "train_loss": train_loss, **{f"dev_{k}": v for k, v in dev.items()}})
            state["losses"] = []
            if state["best_dev"] is None or dev[primary] > state["best_dev"][primary]:
                state["best_dev"], state["best_step"], state["best_vector"] = dev, done, model.vector()
            log(f"[train_det] step {done}/{steps} loss {train_loss:.4f} dev {primary} {dev[primary]:.4f}")
            state.update(step=done, vector=model.vector(), optimizer=optimizer.state_dict())
            save_checkpoint(checkpoint_path, state)
            if on_checkpoint is not None:
                on_checkpoint(done)

    model.load_vector(state["best_vector"])
    with autocast(precision, device):
        test = evaluate(model, eval_batches["test"])
    delta = state["best_vector"] - init_vector
    metadata = {
        "task": task, "det": det_name, "method": det_spec["method"], "det_spec": json.dumps(det_spec, sort_keys=True),
        "seed": seed, "init_seed": spec["init_seed"], "backbone": spec["backbone"]["name_or_path"],
        "backbone_kind": backbone.kind, "tensor_names": json.dumps(model.tensor_names),
        "tensor_shapes": json.dumps(model.tensor_shapes), "num_parameters": model.num_parameters,
        "init_digest": tensor_digest(init_vector), "config_digest": digest,
    }
    save_tensors(out_dir / DELTA_FILE, {"delta": delta}, metadata)
    metrics = {
        "task": task, "det": det_name, "method": det_spec["method"], "seed": seed, "params": model.num_parameters,
        "primary_metric": primary, "dev": state["best_dev"][primary], "test": test[primary],
        "dev_metrics": state["best_dev"], "test_metrics": test, "init_dev": state["init_dev"][primary],
        "majority": task_info["majority_test_accuracy"], "best_step": state["best_step"], "steps": steps,
        "seconds": round(time.perf_counter() - started, 2), "device": str(device), "precision": precision,
        "delta_norm": float(delta.norm()), "history": state["history"], "config_digest": digest,
        "init_digest": metadata["init_digest"],
    }
    write_json(out_dir / METRICS_FILE, metrics)
    log(f"[train_det] done: best step {state['best_step']} dev {metrics['dev']:.4f} test {metrics['test']:.4f} "
        f"majority {metrics['majority']:.4f} in {metrics['seconds']} s")
    return metrics
