"""plant_tasks: the positive control's tasks (config/control.yaml), a family that shares a known subspace.

Every task labels its own real texts (disjoint across tasks) with a teacher: the backbone under one DET at
theta_init + s_t * U z_t, where U is one orthonormal D x r basis shared by all tasks (control.basis: spanned by
r loss gradients at theta_init under random labellings, or Gaussian) and z_t a unit direction drawn per task. So every task's answer lies, by construction, in one r-dimensional subspace of
that DET's space; stage 2 should find it, and an unseen task of the family should be reachable inside it.

The scale s_t is the smallest of `scales` at which the teacher's answers differ from theta_init's on at least
`min_changed` of the texts with every class between `balance`; a direction for which no scale does is
redrawn. What was planted (U's seed, each task's z_t and s_t, its class shares and changed share) is written
beside the task files, in planted.json.
"""
from __future__ import annotations

import json
import time

import torch

from .evaluate import evaluate_examples, prepare_batches
from .io import atomic_path, save_tensors, tensor_digest, write_json
from .job import start_job
from .tasks import Example
from .tasks.package_data import DEFAULT_WHEELS_DIR
from .tasks.leakage import leak_key
from .tasks.packaged import load_packaged


def text_pool(corpora: list[str], wheels_dir, needed: int, seed: int) -> list[str]:
    """`needed` distinct texts (distinct by leak key, as the leakage guard compares them) from the packaged
    corpora, shuffled."""
    seen, texts = set(), []
    for corpus in corpora:
        for example in load_packaged(corpus, wheels_dir):
            key = leak_key(example.input)
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


def gradient_basis(job, det: str, texts: list[str], labels: list[str], rank: int,
                   generator: torch.Generator) -> torch.Tensor:
    """A D x r matrix with orthonormal columns spanned by r loss gradients at theta_init on `texts`, each under a
    random labelling: directions a first training step takes, so a student trained from theta_init can reach
    them from a few hundred examples (a Gaussian direction of D = 36,864 it did not; docs/findings.md).
    Each column is the gradient under a balanced labelling minus the gradient under the labels shifted by one
    class: theta_init's own confidence cancels, and so does any direction that moves every text alike (which
    would plant one class for all)."""
    model, init = job.models[det], job.inits[det]

    def gradient(drawn: list[int]) -> torch.Tensor:
        examples = [Example(text, tuple(labels), label) for text, label in zip(texts, drawn)]
        vector = init.detach().clone().requires_grad_(True)
        for batch in prepare_batches(job.backbone, examples, 64, "planted_basis", job.device):
            (model.functional_loss(vector, batch) * len(batch.example_ids) / len(texts)).backward()
        return vector.grad.detach().float()

    columns = []
    for _ in range(rank):
        order = torch.randperm(len(texts), generator=generator).tolist()
        drawn = [order[i] % len(labels) for i in range(len(texts))]
        columns.append(gradient(drawn) - gradient([(label + 1) % len(labels) for label in drawn]))
    q, _ = torch.linalg.qr(torch.stack(columns, dim=1))
    return q


def answers(job, det: str, vector: torch.Tensor, batches, labels: list[str]) -> torch.Tensor:
    """The index in `labels` of each example's predicted label under DET `det` at `vector`, in the examples' order.
    In fp32 whatever the job's precision (no autocast): the teacher's labels do not depend on the machine."""
    if not batches:  # a task of at most PROBE_TEXTS texts has no rest
        return torch.zeros(0, dtype=torch.long)
    model = job.models[det]
    with torch.no_grad():
        _, predicted = evaluate_examples(lambda batch: model.functional_predict(vector, batch), batches)
    return torch.tensor([labels.index(text) for text in predicted["pred"]])


BASIS_TEXTS = 256  # texts of the gradient basis' random labellings
PROBE_TEXTS = 128  # a scale is tried on this many texts first: a full labelling costs ~4x as much


def label_stats(taught: torch.Tensor, init_answers: torch.Tensor, n_classes: int) -> tuple[float, list[float]]:
    """(share of answers that differ from theta_init's, each class's share of the answers)."""
    shares = (torch.bincount(taught, minlength=n_classes).float() / len(taught)).tolist()
    return float((taught != init_answers).float().mean()), shares


def passes(changed: float, shares: list[float], control: dict) -> bool:
    low, high = control["balance"]
    return changed >= control["min_changed"] and all(low <= share <= high for share in shares)


def choose_scale(job, det: str, direction: torch.Tensor, probe, rest, init_answers: torch.Tensor,
                 control: dict, tried: list):
    """(scale, answers) at the smallest scale whose answers pass the control's bars on the probe texts (the first
    PROBE_TEXTS; batches `probe`) and then on all texts (the others: batches `rest`), else None; every probe's
    statistics are appended to `tried`."""
    labels = control["labels"]
    for scale in control["scales"]:
        vector = job.inits[det] + scale * direction
        probed = answers(job, det, vector, probe, labels)
        changed, shares = label_stats(probed, init_answers[:PROBE_TEXTS], len(labels))
        tried.append((scale, round(changed, 2), [round(x, 2) for x in shares]))
        if passes(changed, shares, control):
            taught = torch.cat([probed, answers(job, det, vector, rest, labels)])
            if passes(*label_stats(taught, init_answers, len(labels)), control):
                return scale, taught
    return None


def plant_tasks(spec: dict, out: dict, info, basis=None, threads: int | None = None, log=print) -> dict:
    """Writes one JSON-lines file per control task (`out`: task -> path; rows {"text", "label"}), `info`
    (planted.json: the planted basis' seed and every task's direction, scale and label statistics) and, when
    given, `basis` (U as a safetensors file: what the learned subspace can be compared with)."""
    started = time.perf_counter()
    control, tasks = spec["control"], list(out)
    det = control["det"]
    job = start_job({**spec, "dets": {det: spec["dets"][det]}}, threads)
    vector = job.inits[det]
    generator = torch.Generator().manual_seed(control["seed"])
    labels, needed = list(control["labels"]), len(tasks) * control["examples"]
    basis_texts = BASIS_TEXTS if control["basis"] == "gradient" else 0
    texts = text_pool(control["corpora"], spec.get("wheels_dir", DEFAULT_WHEELS_DIR), needed + basis_texts,
                      control["seed"])
    if control["basis"] == "gradient":  # its texts are in no task
        planted_u = gradient_basis(job, det, texts[needed:], labels, control["rank"], generator)
    else:
        planted_u = planted_basis(vector.numel(), control["rank"], generator).to(vector.device)
    log(f"[plant_tasks] {len(tasks)} tasks x {control['examples']} texts, teacher {det} (D = {vector.numel()}), "
        f"r = {control['rank']}, labels {labels}")
    planted = {}
    for k, task in enumerate(tasks):
        chunk = texts[k * control["examples"]: (k + 1) * control["examples"]]
        examples = [Example(text, tuple(labels), 0) for text in chunk]  # label 0 is a placeholder: only inputs are scored
        probe = prepare_batches(job.backbone, examples[:PROBE_TEXTS], 64, task, job.device)
        rest = prepare_batches(job.backbone, examples[PROBE_TEXTS:], 64, task, job.device) \
            if len(examples) > PROBE_TEXTS else []
        init_answers = torch.cat([answers(job, det, vector, part, labels) for part in (probe, rest)])
        tried = []
        for attempt in range(control["max_draws"]):
            z = torch.randn(control["rank"], generator=generator)
            z = z / z.norm()
            chosen = choose_scale(job, det, planted_u @ z.to(planted_u.device), probe, rest, init_answers, control,
                                  tried)
            if chosen is not None:
                break
        else:
            raise ValueError(
                f"plant_tasks: task {task!r}: no direction of {control['max_draws']} passed the bars (changed >= "
                f"{control['min_changed']}, class shares in {control['balance']}) at any scale in {control['scales']}; "
                f"(scale, changed, shares) on {PROBE_TEXTS} texts, last draws: {tried[-2 * len(control['scales']):]}. "
                "Change control.scales (larger when too little changed), control.balance or control.min_changed")
        scale, taught = chosen
        with atomic_path(out[task]) as tmp:
            tmp.write_text("".join(json.dumps({"text": t, "label": labels[i]}, ensure_ascii=False) + "\n"
                                   for t, i in zip(chunk, taught.tolist())))
        changed, shares = label_stats(taught, init_answers, len(labels))
        planted[task] = {"z": z.tolist(), "scale": scale, "draws": attempt + 1, "label_shares": shares,
                         "changed_from_init": changed, "file": str(out[task])}
        log(f"[plant_tasks] {task}: scale {scale}, {attempt + 1} draw(s), shares {[round(s, 3) for s in shares]}, "
            f"changed from theta_init {changed:.3f}")
    record = {"det": det, "basis": control["basis"], "rank": control["rank"], "seed": control["seed"],
              "dim": vector.numel(),
              "basis_digest": tensor_digest(planted_u.cpu()), "labels": labels,
              "tasks": planted, "seconds": round(time.perf_counter() - started, 2)}
    if basis is not None:
        save_tensors(basis, {"U": planted_u.cpu().contiguous()}, {"det": det, "basis": control["basis"]})
    write_json(info, record)
    return record
