"""original (stage 1): train one DET on one task in its own space; keep the best dev checkpoint; save its delta.

Reads top to bottom like a plain training loop. A checkpoint after every dev evaluation lets a killed job
resume, and the data order is a fixed function of the seed, so a resumed run ends with the same numbers.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .evaluate import evaluate, evaluate_examples, predictions_table
from .hardware import autocast
from .io import config_digest, load_checkpoint, save_checkpoint, save_tensors, tensor_digest, write_csv, write_json
from .job import batch_order, load_task_splits, start_job
from .optim import make_optimizer
from .paths import OriginalRun
from .tasks import improves, reported_metrics


def train_det(task: str, det: str, seed: int, spec: dict, data, out, checkpoint: str | Path,
              threads: int | None = None, log=print, on_checkpoint=None) -> dict:
    """Train `spec["det"]` on `task` (data: prepare_task's TaskData or folder); writes the OriginalRun files
    `out` (or into that folder). `checkpoint`: the file a killed job resumes from."""
    started = time.perf_counter()
    out, checkpoint_path = OriginalRun.of(out), Path(checkpoint)
    training, det_spec = spec["original"], spec["det"]
    steps, batch_size, eval_every = training["steps"], training["batch_size"], training["eval_every"]
    splits, task_info = load_task_splits(data, task)
    primary = task_info.get("primary_metric", "accuracy")
    reported = reported_metrics(primary)
    torch.manual_seed(seed)  # before the backbone loads: a head it initialises at random is then seeded too
    job = start_job(spec, threads, dets={det: det_spec})
    device, precision, model, backbone = job.device, job.precision, job.models[det], job.backbone

    init_vector = model.vector()
    optimizer = make_optimizer(training["optimizer"], model.trainable_parameters(), det_spec.get("lr", training["lr"]))
    form = job.task_format(task, task_info, splits["train"])
    eval_batches = {name: job.batches(splits[name], form, training["eval_batch_size"]) for name in ("dev", "test")}
    order = batch_order(len(splits["train"]), batch_size, steps, seed)
    digest = config_digest({"spec": spec, "task": task, "seed": seed, "data": task_info.get("files")})
    log(f"[original] task={task} det={det} method={det_spec['method']} params={model.num_parameters} "
        f"device={device} precision={precision} steps={steps} batch={batch_size}")

    # Plain dicts of the reported metrics: they are written out and kept in the checkpoint.
    def score(split: str) -> dict:
        with autocast(precision, device):
            return dict(evaluate(model, eval_batches[split], reported))

    def test_examples():
        with autocast(precision, device):
            metrics, predictions = evaluate_examples(model, eval_batches["test"], reported)
        return dict(metrics), predictions

    state = load_checkpoint(checkpoint_path, digest, log, "original")
    if state is None:
        init_test, init_predictions = test_examples()
        state = {"step": 0, "best_dev": None, "best_step": 0, "best_vector": init_vector, "history": [],
                 "init_dev": score("dev"), "init_test": init_test, "init_predictions": init_predictions["pred"].tolist(),
                 "digest": digest, "losses": []}
    else:
        # A checkpoint from before init_test, or from when predictions were candidate indices, not texts: the
        # model is still at theta_init here.
        if not all(isinstance(p, str) for p in state.get("init_predictions", [None])):
            init_test, init_predictions = test_examples()
            state.update(init_test=init_test, init_predictions=init_predictions["pred"].tolist())
        model.load_vector(state["vector"])
        optimizer.load_state_dict(state["optimizer"])
        log(f"[original] resumed from {checkpoint_path} at step {state['step']}")

    model.train()
    for step in range(state["step"], steps):
        batch = backbone.prepare([splits["train"][i] for i in order[step].tolist()], form).to(device)
        with autocast(precision, device):
            loss = model(batch, "loss")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state["losses"].append(loss.item())
        done = step + 1
        if done % eval_every == 0 or done == steps:
            dev = score("dev")
            train_loss = sum(state["losses"]) / len(state["losses"])
            state["history"].append({"step": done, "train_loss": train_loss, **{f"dev_{k}": v for k, v in dev.items()}})
            state["losses"] = []
            if improves(dev[primary], None if state["best_dev"] is None else state["best_dev"][primary]):
                state["best_dev"], state["best_step"], state["best_vector"] = dev, done, model.vector()
            log(f"[original] step {done}/{steps} loss {train_loss:.4f} dev {primary} {dev[primary]:.4f}")
            state.update(step=done, vector=model.vector(), optimizer=optimizer.state_dict())
            save_checkpoint(checkpoint_path, state)
            if on_checkpoint is not None:
                on_checkpoint(done)

    model.load_vector(state["best_vector"])
    test, predictions = test_examples()
    init_predictions = predictions.assign(pred=state["init_predictions"])
    delta = state["best_vector"] - init_vector
    metadata = {
        "task": task, "det": det, "method": det_spec["method"], "det_spec": json.dumps(det_spec, sort_keys=True),
        "seed": seed, "init_seed": spec["init_seed"], "backbone": spec["backbone"]["name_or_path"],
        "backbone_kind": backbone.kind, "tensor_names": json.dumps(model.tensor_names),
        "tensor_shapes": json.dumps(model.tensor_shapes), "num_parameters": model.num_parameters,
        "init_digest": tensor_digest(init_vector), "config_digest": digest,
    }
    save_tensors(out.delta, {"delta": delta}, metadata)
    metrics = {
        "task": task, "det": det, "method": det_spec["method"], "seed": seed, "params": model.num_parameters,
        "primary_metric": primary, "dev": state["best_dev"][primary], "test": test[primary],
        "dev_metrics": state["best_dev"], "test_metrics": test, "init_dev": state["init_dev"][primary],
        "init_test": state["init_test"][primary], "gain": test[primary] - state["init_test"][primary],
        "majority": task_info.get("majority_test_score", task_info["majority_test_accuracy"]), "best_step": state["best_step"], "steps": steps,
        "seconds": round(time.perf_counter() - started, 2), "device": str(device), "precision": precision,
        "delta_norm": float(delta.norm()), "history": state["history"], "config_digest": digest,
        "init_digest": metadata["init_digest"],
    }
    write_csv(out.predictions, predictions_table({"init": init_predictions, "own": predictions}))
    write_json(out.metrics, metrics)
    log(f"[original] done: best step {state['best_step']} dev {metrics['dev']:.4f} test {metrics['test']:.4f} "
        f"majority {metrics['majority']:.4f} in {metrics['seconds']} s")
    return metrics
