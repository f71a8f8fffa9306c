"""plant_tasks: the positive control's tasks (config/control.yaml), a family that shares a known subspace.

Every task labels its own real texts (disjoint across tasks) with a teacher: the backbone under one DET at
theta_init + s_t * U z_t, where U is one random orthonormal D x r basis shared by all tasks and z_t a unit
direction drawn per task. So every task's answer lies, by construction, in one r-dimensional subspace of
that DET's space; stage 2 should find it, and an unseen task of the family should be reachable inside it.

The scale s_t is the smallest of `scales` at which the teacher's answers differ from theta_init's on at least
`min_changed` of the texts with every class between `balance`; a direction for which no scale does is
redrawn. What was planted (U's seed, each task's z_t and s_t, its class shares and changed share) is written
beside the task files, in planted.json.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from .evaluate import prepare_batches
from .io import atomic_path, write_json
from .job import start_job
from .tasks import Example
from .tasks.package_data import DEFAULT_WHEELS_DIR
from .tasks.packaged import load_packaged


def text_pool(corpora: list[str], wheels_dir, needed: int, seed: int) -> list[str]:
    """`needed` distinct texts (compared case- and space-insensitively) from the packaged corpora, shuffled."""
    seen, texts = set(), []
    for corpus in corpora:
        for example in load_packaged(corpus, wheels_dir):
            key = " ".join(example.input.lower().split())
            if key and key not in seen:
                seen.add(key)
                texts.append(example.input)
    if len(texts) < needed:
        raise ValueError(f"plant_tasks: corpora {corpora} hold {len(texts)} distinct texts, {needed} are needed "
                         "(control.tasks x control.examples); add corpora or ask for fewer")
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed)).tolist()
    return [texts[i] for i in order[:needed]]


def planted_basis(dim: int, rank: int, generator: torch.Generator) -> torch.Tensor:
    """A random D x r matrix with orthonormal columns (QR of a Gaussian one)."""
    q, _ = torch.linalg.qr(torch.randn(dim, rank, generator=generator))
    return q


def answers(job, det: str, vector: torch.Tensor, batches) -> torch.Tensor:
    """The index of each example's best candidate under DET `det` at `vector`, in the examples' order."""
    model, chosen = job.models[det], {}
    with torch.no_grad():
        for batch in batches:
            best = model.functional_predict(vector, batch).argmax(-1).tolist()
            chosen.update(zip(batch.example_ids, best))
    return torch.tensor([chosen[i] for i in range(len(chosen))])


def choose_scale(job, det: str, direction: torch.Tensor, batches, init_answers: torch.Tensor, control: dict):
    """(scale, answers) at the smallest scale whose answers pass the control's bars, else None."""
    n_classes = len(control["labels"])
    low, high = control["balance"]
    for scale in control["scales"]:
        taught = answers(job, det, job.inits[det] + scale * direction, batches)
        shares = torch.bincount(taught, minlength=n_classes).float() / len(taught)
        changed = float((taught != init_answers).float().mean())
        if changed >= control["min_changed"] and bool(((shares >= low) & (shares <= high)).all()):
            return scale, taught
    return None


def plant_tasks(spec: dict, out: dict, info, threads: int | None = None, log=print) -> dict:
    """Writes one JSON-lines file per control task (`out`: task -> path; rows {"text", "label"}) and `info`
    (planted.json: the planted basis' seed and every task's direction, scale and label statistics)."""
    started = time.perf_counter()
    control, tasks = spec["control"], list(out)
    det = control["det"]
    job = start_job({**spec, "dets": {det: spec["dets"][det]}}, threads)
    vector = job.inits[det]
    generator = torch.Generator().manual_seed(control["seed"])
    basis = planted_basis(vector.numel(), control["rank"], generator).to(vector.device)
    texts = text_pool(control["corpora"], spec.get("wheels_dir", DEFAULT_WHEELS_DIR),
                      len(tasks) * control["examples"], control["seed"])
    labels = list(control["labels"])
    log(f"[plant_tasks] {len(tasks)} tasks x {control['examples']} texts, teacher {det} (D = {vector.numel()}), "
        f"r = {control['rank']}, labels {labels}")
    planted = {}
    for k, task in enumerate(tasks):
        chunk = texts[k * control["examples"]: (k + 1) * control["examples"]]
        examples = [Example(text, tuple(labels), 0) for text in chunk]  # label 0 is a placeholder: only inputs are scored
        batches = prepare_batches(job.backbone, examples, 64, task, job.device)
        init_answers = answers(job, det, vector, batches)
        for attempt in range(control["max_draws"]):
            z = torch.randn(control["rank"], generator=generator)
            z = z / z.norm()
            chosen = choose_scale(job, det, basis @ z.to(basis.device), batches, init_answers, control)
            if chosen is not None:
                break
        else:
            raise ValueError(f"plant_tasks: task {task!r}: no direction of {control['max_draws']} passed the bars at "
                             f"any scale in {control['scales']}; widen control.scales or control.balance")
        scale, taught = chosen
        with atomic_path(out[task]) as tmp:
            tmp.write_text("".join(json.dumps({"text": t, "label": labels[i]}, ensure_ascii=False) + "\n"
                                   for t, i in zip(chunk, taught.tolist())))
        shares = (torch.bincount(taught, minlength=len(labels)).float() / len(taught)).tolist()
        planted[task] = {"z": z.tolist(), "scale": scale, "draws": attempt + 1, "label_shares": shares,
                         "changed_from_init": float((taught != init_answers).float().mean()),
                         "file": str(out[task])}
        log(f"[plant_tasks] {task}: scale {scale}, {attempt + 1} draw(s), shares {[round(s, 3) for s in shares]}, "
            f"changed from theta_init {planted[task]['changed_from_init']:.3f}")
    record = {"det": det, "rank": control["rank"], "seed": control["seed"], "dim": vector.numel(),
              "basis_digest": hashlib.sha256(basis.cpu().numpy().tobytes()).hexdigest()[:16], "labels": labels,
              "tasks": planted, "seconds": round(time.perf_counter() - started, 2)}
    write_json(info, record)
    return record
