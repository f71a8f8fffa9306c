"""decompose (stage 2): learn the shared subspace from the stage-1 deltas of every DET (method.md, joint decomposition).

Each step takes one training task's deltas for all DETs, projects them down, mixes the points at a random
point of the simplex, and minimises lambda * reconstruction distance + the backbone's task loss of every
DET decoded from the mixed point. The task loss reaches the projections through the functional DET forward.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pandas as pd
import torch

from .dets import DeltaModel
from .hardware import autocast
from .io import (atomic_path, config_digest, load_checkpoint, load_tensors, read_json, save_checkpoint,
                 tensor_digest, write_json)
from .job import Job, check_inits, start_job
from .optim import make_optimizer
from .paths import Decomposition, TaskData, Vectors
from .subspace import Subspace, init_from_joint_svd, save_subspace, simplex_weights, structured_dets
from .subspace_health import diagnose, health_warnings
from .tasks import improves, read_split

DENSE_MAX_NUMBERS = 25_000_000  # the schema's default of decompose.dense_max_numbers


def vector_files(vectors, dets) -> dict[str, Path]:
    """DET -> its collect_vectors matrix: as given, or under its standard name in the folder `vectors`."""
    if isinstance(vectors, dict):
        return {det: Path(vectors[det]) for det in dets}
    return {det: Vectors.at(Path(vectors)).formatted(det=det).matrix for det in dets}


def load_stage1_vectors(matrices: dict[str, Path], models: dict[str, DeltaModel]):
    """Per DET: (deltas matrix, {(task, seed): row}); checks each matrix matches the rebuilt DET's init."""
    vectors = {}
    for det, model in models.items():
        path = matrices[det]
        tensors, meta = load_tensors(path)
        check_inits({det: model}, {det: meta.get("init_digest")}, path)
        rows = {(task, int(seed)): i for i, (task, seed) in enumerate(json.loads(meta["rows"]))}
        vectors[det] = (tensors["deltas"], rows)
    return vectors


def training_samples(vectors, tasks: list[str]) -> list[tuple[str, int]]:
    """(task, seed) pairs that every DET has a stage-1 solution for."""
    common = set.intersection(*(set(rows) for _, rows in vectors.values()))
    samples = sorted(s for s in common if s[0] in tasks)
    missing = sorted(set(tasks) - {t for t, _ in samples})
    if missing:
        raise ValueError(f"decompose: training task(s) {missing} lack stage-1 vectors for every DET")
    return samples


def mixed_dev_score(job: Job, subspace: Subspace, deltas_of, dev_batches, primary, scheme: str, generator) -> float:
    """Mean dev metric of every DET decoded at one random mixing point (drawn by `scheme`) of each task's points."""
    scores = []
    for task, batches in dev_batches.items():
        with torch.no_grad():
            points = subspace.points(deltas_of(task))
        mixed = Subspace.mix(points, simplex_weights(len(points), scheme, generator).to(job.device))
        for det in job.models:
            scores.append(job.score_point(det, subspace.up[det], mixed, batches)[primary[task]])
    return sum(scores) / len(scores)


def joint_loss(subspace: Subspace, models: dict[str, DeltaModel], inits: dict[str, torch.Tensor],
               deltas: dict[str, torch.Tensor], batch, weights: torch.Tensor, lam: float, precision: str, device):
    """Stage 2's objective for one task (method.md): lambda * sum_m ||Delta_m - Up_m(Down_m(Delta_m))||_2 plus
    sum_m of DET m's task loss at init_m + Up_m(I_mix), I_mix = sum_k w_k Down_k(Delta_k).
    Returns (loss, reconstruction term without lambda, task-loss term)."""
    points = subspace.points(deltas)
    mixed = Subspace.mix(points, weights)
    reconstruction = subspace.reconstruction_loss(deltas, points)
    task_loss = 0.0
    for det, model in models.items():
        with autocast(precision, device):
            task_loss = task_loss + model.functional_loss(inits[det] + subspace.decode(det, mixed), batch)
    return lam * reconstruction + task_loss, reconstruction, task_loss


def decompose(spec: dict, vectors, data: dict, out, checkpoint: str | Path, threads: int | None = None, log=print,
              on_checkpoint=None) -> dict:
    """Learns the subspace from each DET's stage-1 matrix (vectors: {det: file}, or their folder) and the
    training tasks' data ({task: TaskData or folder}); writes the Decomposition files `out` (or into that
    folder): the subspace (projections + every DET's init), the training tasks' points, the run's metrics.
    `checkpoint`: the file a killed job resumes from."""
    started = time.perf_counter()
    out, checkpoint_path = Decomposition.of(out), Path(checkpoint)
    sub = spec["decompose"]
    seed = spec.get("seed", 0)
    torch.manual_seed(seed)  # before the backbone loads, as in stage 1

    job = start_job(spec, threads)
    device, precision, models, inits, backbone = job.device, job.precision, job.models, job.inits, job.backbone
    matrices = vector_files(vectors, models)
    vectors = load_stage1_vectors(matrices, models)
    tasks = list(sub["train_tasks"])
    samples = training_samples(vectors, tasks)
    data = {t: TaskData.of(data[t]) for t in tasks}
    train = {t: read_split(data[t].train) for t in tasks}
    dev = {t: read_split(data[t].dev)[: sub["dev_examples"]] for t in tasks}
    primary = {t: read_json(data[t].summary).get("primary_metric", "accuracy") for t in tasks}
    forms = {t: job.task_format(t, read_json(data[t].summary), train[t]) for t in tasks}
    dev_batches = {t: job.batches(dev[t], forms[t], sub["eval_batch_size"]) for t in tasks}

    def deltas_of(task: str, seed_of_row: int | None = None) -> dict[str, torch.Tensor]:
        key = next(s for s in samples if s[0] == task) if seed_of_row is None else (task, seed_of_row)
        return {det: matrix[rows[key]].to(device) for det, (matrix, rows) in vectors.items()}

    dims = {det: m.num_parameters for det, m in models.items()}
    structured = structured_dets(dims, sub["intrinsic_dim"], sub.get("dense_max_numbers", DENSE_MAX_NUMBERS))
    subspace = Subspace(dims, sub["intrinsic_dim"], structured=structured).to(device)
    if structured:
        log(f"[decompose] Fastfood projections for {structured}: D x r above decompose.dense_max_numbers")
    rows = {det: torch.stack([matrix[index[s]] for s in samples]).to(device) for det, (matrix, index) in vectors.items()}
    # The plain linear fit that the joint decomposition is measured against (optimize's svd_subspace baseline).
    svd_subspace = subspace if sub.get("init", "random") == "joint_svd" else copy.deepcopy(subspace)
    errors = init_from_joint_svd(svd_subspace, rows)
    log(f"[decompose] joint_svd fit: relative reconstruction error per DET {errors}")
    save_subspace(out.svd_subspace, svd_subspace, models, inits, spec, tasks)
    optimizer = make_optimizer(sub["optimizer"], subspace.parameters(), sub["lr"])
    generator = torch.Generator().manual_seed(seed)
    steps, batch_size, lam = sub["steps"], sub["batch_size"], sub["lambda"]
    digest = config_digest({"spec": spec, "vectors": {d: tensor_digest(m) for d, (m, _) in vectors.items()}})
    log(f"[decompose] dets={list(models)} dims={[m.num_parameters for m in models.values()]} r={subspace.rank} "
        f"tasks={tasks} steps={steps} device={device} precision={precision}")

    def evaluate(done: int, recon=None, task_loss=None) -> dict:
        """One history entry: the losses since the last one, the mixed dev score and each DET's diagnostics.
        Every evaluation mixes at the same random points, so steps are compared on equal terms."""
        eval_generator = torch.Generator().manual_seed(seed)
        dev_score = mixed_dev_score(job, subspace, deltas_of, dev_batches, primary, sub["mixing"], eval_generator)
        return {"step": done, "reconstruction": recon, "task_loss": task_loss, "dev_mixed": dev_score,
                "dets": diagnose(subspace, rows)}

    state = load_checkpoint(checkpoint_path, digest, log, "decompose")
    if state is not None:
        subspace.load_state_dict(state["subspace"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        log(f"[decompose] resumed from {checkpoint_path} at step {state['step']}")
    else:
        # Step 0, the start, is a checkpoint like any other: stage 2 keeps it unless training beats it on dev.
        start = evaluate(0)
        log(f"[decompose] step 0 (start) dev(mixed) {start['dev_mixed']:.4f} {_health_line(start['dets'])}")
        state = {"step": 0, "best": start["dev_mixed"], "best_step": 0,
                 "best_subspace": {k: v.detach().clone() for k, v in subspace.state_dict().items()},
                 "history": [start], "losses": [], "digest": digest}

    for step in range(state["step"], steps):
        task, row_seed = samples[int(torch.randint(len(samples), (), generator=generator))]
        picks = torch.randint(len(train[task]), (batch_size,), generator=generator).tolist()
        batch = backbone.prepare([train[task][i] for i in picks], forms[task]).to(device)
        deltas = deltas_of(task, row_seed)
        weights = simplex_weights(len(deltas), sub["mixing"], generator).to(device)
        loss, reconstruction, task_loss = joint_loss(subspace, models, inits, deltas, batch, weights, lam,
                                                     precision, device)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state["losses"].append([reconstruction.item(), task_loss.item()])
        done = step + 1
        if done % sub["eval_every"] == 0 or done == steps:
            recon, tl = (sum(x[i] for x in state["losses"]) / len(state["losses"]) for i in (0, 1))
            entry = evaluate(done, recon, tl)
            dev_score = entry["dev_mixed"]
            state["history"].append(entry)
            state["losses"] = []
            if improves(dev_score, state["best"]):
                state.update(best=dev_score, best_step=done,
                             best_subspace={k: v.detach().clone() for k, v in subspace.state_dict().items()})
            log(f"[decompose] step {done}/{steps} reconstruction {recon:.4f} task loss {tl:.4f} dev(mixed) {dev_score:.4f} "
                f"{_health_line(entry['dets'])}")
            state.update(step=done, subspace=subspace.state_dict(), optimizer=optimizer.state_dict(),
                         generator=generator.get_state())
            save_checkpoint(checkpoint_path, state)
            if on_checkpoint is not None:
                on_checkpoint(done)

    subspace.load_state_dict(state["best_subspace"])
    save_subspace(out.subspace, subspace, models, inits, spec, tasks)
    points = write_points(out.points, subspace, vectors, samples, matrices, device)
    start, saved = state["history"][0], next(h for h in state["history"] if h["step"] == state["best_step"])
    warnings = health_warnings(start, saved, state["history"][-1])
    metrics = {"best_step": state["best_step"], "dev_mixed": state["best"], "steps": steps,
               "seconds": round(time.perf_counter() - started, 2), "history": state["history"],
               "start": start, "saved": saved, "warnings": warnings,
               "optimizer": sub["optimizer"], "lr": sub["lr"],
               "train_tasks": tasks, "intrinsic_dim": subspace.rank, "device": str(device), "precision": precision,
               "mean_relative_reconstruction_error": float(points["relative_error"].mean())}
    write_json(out.metrics, metrics)
    if state["best_step"] == 0:
        log("[decompose] stage 2 did not improve on its start: the saved subspace is the start (step 0)")
    for warning in warnings:
        log(f"[decompose] WARNING: {warning}")
    log(f"[decompose] done: best step {state['best_step']} dev(mixed) {state['best']:.4f} in {metrics['seconds']} s")
    return metrics


def _health_line(dets: dict[str, dict[str, float]]) -> str:
    return "; ".join(f"{det}: rel. error {d['relative_error']:.3f}, saturated {d['saturated']:.0%}, "
                     f"|point| {d['point_norm']:.2f}" for det, d in dets.items())


def write_points(path, subspace: Subspace, vectors, samples, matrices: dict[str, Path], device) -> pd.DataFrame:
    """Each (task, seed, DET) point in the subspace, with how well its delta is reconstructed."""
    rows = []
    with torch.no_grad():
        for task, seed in samples:
            for det, (matrix, index) in vectors.items():
                delta = matrix[index[(task, seed)]].to(device)
                point = subspace.points({det: delta})[det]
                error = torch.linalg.vector_norm(delta - subspace.decode(det, point)) / delta.norm().clamp_min(1e-12)
                rows.append({"task": task, "seed": seed, "det": det, "relative_error": float(error),
                             **{f"i{k}": float(x) for k, x in enumerate(point)},
                             "source": str(matrices[det])})
    table = pd.DataFrame(rows)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return table
