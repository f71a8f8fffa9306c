"""Stage 2: learn the shared subspace from the stage-1 deltas of every DET (method.md, joint decomposition).

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
import torch.nn.functional as F

from .backbones import load_backbone
from .dets import DeltaModel, build_delta_model
from .evaluate import evaluate, prepare_batches
from .hardware import autocast, job_setup
from .io import (atomic_path, config_digest, load_tensors, read_json, save_checkpoint, save_tensors, tensor_digest,
                 write_json)
from .optim import make_optimizer
from .subspace import Subspace, init_from_joint_svd, simplex_weights, structured_dets
from .tasks import TASK_SUMMARY_FILE, read_split

SUBSPACE_FILE = "subspace.safetensors"
POINTS_FILE = "points.csv"
STAGE2_METRICS_FILE = "metrics.json"
STAGE2_CHECKPOINT_FILE = "last.pt"
DENSE_MAX_NUMBERS = 25_000_000  # the schema's default of subspace.dense_max_numbers


def load_det_models(spec: dict, device) -> dict[str, DeltaModel]:
    """One DeltaModel per DET, each on its own copy of the backbone (DETs must not see each other)."""
    backbone = load_backbone(spec["backbone"], device)
    models = {}
    for i, (det, det_spec) in enumerate(spec["dets"].items()):
        copy_of_backbone = backbone if i == len(spec["dets"]) - 1 else copy.deepcopy(backbone)
        models[det] = build_delta_model(copy_of_backbone, det_spec, spec["init_seed"])
    return models


def check_inits(models: dict[str, DeltaModel], digests: dict[str, str], source) -> None:
    """Deltas only mean something added to the init they were trained from: refuse any other."""
    for det, model in models.items():
        if digests.get(det) != tensor_digest(model.vector()):
            raise ValueError(f"{source} was made from another init of DET {det!r} (backbone, DET options or "
                             f"init_seed differ from this config); rerun the stages before this one")


def load_stage1_vectors(vectors_dir: Path, models: dict[str, DeltaModel]):
    """Per DET: (deltas matrix, {(task, seed): row}); checks each matrix matches the rebuilt DET's init."""
    vectors = {}
    for det, model in models.items():
        path = vectors_dir / f"{det}.safetensors"
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


def mixed_dev_score(subspace, models, inits, deltas_of, dev_batches, primary, scheme, generator, precision,
                    device) -> float:
    """Mean dev metric of every DET decoded at one random mixing point (drawn by `scheme`) of each task's points."""
    scores = []
    with torch.no_grad():
        for task, batches in dev_batches.items():
            points = subspace.points(deltas_of(task))
            mixed = Subspace.mix(points, simplex_weights(len(points), scheme, generator).to(device))
            for det, model in models.items():
                vector = inits[det] + subspace.decode(det, mixed)
                with autocast(precision, device):
                    scores.append(evaluate(lambda b: model.functional_scores(vector, b), batches)[primary[task]])
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
            scores = model.functional_scores(inits[det] + subspace.decode(det, mixed), batch)
        task_loss = task_loss + F.cross_entropy(scores, batch.labels)
    return lam * reconstruction + task_loss, reconstruction, task_loss


def decompose(spec: dict, vectors_dir: str | Path, data_dirs: dict[str, str | Path], out_dir: str | Path,
              checkpoint_dir: str | Path, threads: int | None = None, log=print, on_checkpoint=None) -> dict:
    """Writes subspace.safetensors (projections + every DET's init), points.csv and metrics.json."""
    started = time.perf_counter()
    vectors_dir, out_dir, checkpoint_dir = Path(vectors_dir), Path(out_dir), Path(checkpoint_dir)
    device, precision = job_setup(spec, threads)
    sub = spec["subspace"]
    seed = spec.get("seed", 0)
    torch.manual_seed(seed)

    models = load_det_models(spec, device)
    backbone = next(iter(models.values())).backbone
    vectors = load_stage1_vectors(vectors_dir, models)
    tasks = list(sub["train_tasks"])
    samples = training_samples(vectors, tasks)
    inits = {det: m.vector().to(device) for det, m in models.items()}
    train = {t: read_split(Path(data_dirs[t]) / "train.jsonl") for t in tasks}
    dev = {t: read_split(Path(data_dirs[t]) / "dev.jsonl")[: sub["dev_examples"]] for t in tasks}
    primary = {t: read_json(Path(data_dirs[t]) / TASK_SUMMARY_FILE).get("primary_metric", "accuracy") for t in tasks}
    dev_batches = {t: prepare_batches(backbone, dev[t], sub["eval_batch_size"], t, device) for t in tasks}

    def deltas_of(task: str, seed_of_row: int | None = None) -> dict[str, torch.Tensor]:
        key = next(s for s in samples if s[0] == task) if seed_of_row is None else (task, seed_of_row)
        return {det: matrix[rows[key]].to(device) for det, (matrix, rows) in vectors.items()}

    dims = {det: m.num_parameters for det, m in models.items()}
    structured = structured_dets(dims, sub["intrinsic_dim"], sub.get("dense_max_numbers", DENSE_MAX_NUMBERS))
    subspace = Subspace(dims, sub["intrinsic_dim"], structured=structured).to(device)
    if structured:
        log(f"[decompose] Fastfood projections for {structured}: D x r above subspace.dense_max_numbers")
    if sub.get("init", "random") == "joint_svd":
        rows = {det: torch.stack([matrix[index[s]] for s in samples]).to(device) for det, (matrix, index) in vectors.items()}
        errors = init_from_joint_svd(subspace, rows)
        log(f"[decompose] joint_svd start: relative reconstruction error per DET {errors}")
    optimizer = make_optimizer(sub["optimizer"], subspace.parameters(), sub["lr"])
    generator = torch.Generator().manual_seed(seed)
    steps, batch_size, lam = sub["steps"], sub["batch_size"], sub["lambda"]
    digest = config_digest({"spec": spec, "vectors": {d: tensor_digest(m) for d, (m, _) in vectors.items()}})
    log(f"[decompose] dets={list(models)} dims={[m.num_parameters for m in models.values()]} r={subspace.rank} "
        f"tasks={tasks} steps={steps} device={device} precision={precision}")

    checkpoint_path = checkpoint_dir / STAGE2_CHECKPOINT_FILE
    state = torch.load(checkpoint_path, weights_only=True) if checkpoint_path.exists() else {}
    if state.get("digest") == digest:
        subspace.load_state_dict(state["subspace"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        log(f"[decompose] resumed from {checkpoint_path} at step {state['step']}")
    else:
        state = {"step": 0, "best": None, "best_step": 0, "best_subspace": None, "history": [], "losses": [],
                 "digest": digest}

    for step in range(state["step"], steps):
        task, row_seed = samples[int(torch.randint(len(samples), (), generator=generator))]
        picks = torch.randint(len(train[task]), (batch_size,), generator=generator).tolist()
        batch = backbone.prepare([train[task][i] for i in picks], task).to(device)
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
            eval_generator = torch.Generator().manual_seed(seed + done)
            dev_score = mixed_dev_score(subspace, models, inits, deltas_of, dev_batches, primary, sub["mixing"],
                                        eval_generator, precision, device)
            recon, tl = (sum(x[i] for x in state["losses"]) / len(state["losses"]) for i in (0, 1))
            state["history"].append({"step": done, "reconstruction": recon, "task_loss": tl, "dev_mixed": dev_score})
            state["losses"] = []
            if state["best"] is None or dev_score > state["best"]:
                state.update(best=dev_score, best_step=done,
                             best_subspace={k: v.detach().clone() for k, v in subspace.state_dict().items()})
            log(f"[decompose] step {done}/{steps} reconstruction {recon:.4f} task loss {tl:.4f} dev(mixed) {dev_score:.4f}")
            state.update(step=done, subspace=subspace.state_dict(), optimizer=optimizer.state_dict(),
                         generator=generator.get_state())
            save_checkpoint(checkpoint_path, state)
            if on_checkpoint is not None:
                on_checkpoint(done)

    subspace.load_state_dict(state["best_subspace"])
    save_subspace(out_dir / SUBSPACE_FILE, subspace, models, inits, spec, tasks)
    points = write_points(out_dir / POINTS_FILE, subspace, vectors, samples, vectors_dir, device)
    metrics = {"best_step": state["best_step"], "dev_mixed": state["best"], "steps": steps,
               "seconds": round(time.perf_counter() - started, 2), "history": state["history"],
               "train_tasks": tasks, "intrinsic_dim": subspace.rank, "device": str(device), "precision": precision,
               "mean_relative_reconstruction_error": float(points["relative_error"].mean())}
    write_json(out_dir / STAGE2_METRICS_FILE, metrics)
    log(f"[decompose] done: best step {state['best_step']} dev(mixed) {state['best']:.4f} in {metrics['seconds']} s")
    return metrics


def save_subspace(path, subspace: Subspace, models, inits, spec, tasks) -> None:
    """One artifact: every DET's up/down projection and init, with what is needed to rebuild the DETs."""
    tensors = {f"{kind}.{name}": t for kind, module in (("down", subspace.down), ("up", subspace.up))
               for name, t in module.state_dict().items()}
    tensors |= {f"init.{det}": v for det, v in inits.items()}
    metadata = {"dets": json.dumps(spec["dets"], sort_keys=True), "backbone": json.dumps(spec["backbone"], sort_keys=True),
                "init_seed": spec["init_seed"], "intrinsic_dim": subspace.rank, "train_tasks": json.dumps(tasks),
                "init_digests": json.dumps({det: tensor_digest(v) for det, v in inits.items()}),
                "dims": json.dumps({det: m.num_parameters for det, m in models.items()}),
                "projections": json.dumps({det: "fastfood" if det in subspace.structured else "dense"
                                           for det in subspace.dets})}
    save_tensors(path, tensors, metadata)


def load_subspace(path) -> tuple[Subspace, dict[str, torch.Tensor], dict]:
    """(subspace, {det: init vector}, metadata) from a subspace.safetensors artifact."""
    tensors, meta = load_tensors(path)
    kinds = json.loads(meta.get("projections", "{}"))  # absent: written before structured projections existed
    subspace = Subspace(json.loads(meta["dims"]), int(meta["intrinsic_dim"]),
                        structured=[det for det, kind in kinds.items() if kind == "fastfood"])
    for kind, module in (("down", subspace.down), ("up", subspace.up)):
        module.load_state_dict({k[len(kind) + 1:]: v for k, v in tensors.items() if k.startswith(kind + ".")})
    inits = {k[len("init."):]: v for k, v in tensors.items() if k.startswith("init.")}
    return subspace, inits, meta


def write_points(path, subspace: Subspace, vectors, samples, vectors_dir, device) -> pd.DataFrame:
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
                             "source": str(vectors_dir / f"{det}.safetensors")})
    table = pd.DataFrame(rows)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return table
