"""The learned subspace as one reusable artifact folder, and a small API to use it on a new task.

    from deltaspace import artifact
    art = artifact.load("results/export/subspace")
    found = art.train_intrinsic("results/data/vader_movies", det="lora", steps=32)  # r numbers: found.point
    model = art.decode("lora", found.point)        # a DeltaModel: model(batch) scores the candidates
    art.export_peft("lora", found.point, "my_lora")  # a PEFT adapter folder (deltaspace.export)

The folder holds stage 2's subspace.safetensors unchanged (every DET's up/down projection and theta_init, with the
DET specs, backbone spec, init_seed, r and training tasks as metadata; read by subspace.load_subspace), the training
tasks' points (points.csv) and a generated model card (README.md).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .dets import DeltaModel
from .export import PEFT_METHODS, TASK_TYPES, check_exportable, rebuild_delta_model, save_peft_adapter
from .io import atomic_path, load_tensors, read_json, tensor_digest
from .subspace import load_subspace
from .job import Job
from .optimize import tokenised_batches, train_intrinsic as train_in_subspace
from .paths import Artifact, TaskData, file_in
from .tasks import Example, RawTask, read_split



@dataclass
class IntrinsicResult:
    """An intrinsic vector trained on a task: the best dev point over the lr grid (stage 3's rule)."""

    point: torch.Tensor  # (r,) the coordinates in the subspace
    dev: float
    test: float | None  # only when a test split was given
    lr: float | None  # None: the start scored best on dev (best_step 0)
    best_step: int
    history: list[dict] = field(default_factory=list)


def _examples(rows) -> list[Example]:
    return [row if isinstance(row, Example) else Example.from_json(row) for row in rows]


def _task_splits(data, task: str | None) -> tuple[dict[str, list[Example]], str, dict]:
    """(splits, task name, its task.json or what the examples tell of it) from a prepared task folder, a
    {split: examples} dict or one list."""
    if isinstance(data, (str, Path)):
        folder = Path(data)
        files = TaskData.at(folder)
        splits = {name: read_split(files.split(name)) for name in ("train", "dev")}
        if files.test.exists():
            splits["test"] = read_split(files.test)
        summary = files.summary
        return splits, task or folder.name, read_json(summary) if summary.exists() else _task_info(splits)
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"train", "dev", "test"})
        if unknown or "train" not in data:
            raise ValueError(f"train_intrinsic: data must have a 'train' split (and optional 'dev', 'test'); "
                             f"got keys {sorted(data)}")
        splits = {name: _examples(rows) for name, rows in data.items()}
    else:
        splits = {"train": _examples(data)}
    # Without a dev split the best point is chosen on the training examples themselves.
    splits.setdefault("dev", splits["train"])
    for name, examples in splits.items():
        if not examples:
            raise ValueError(f"train_intrinsic: split {name!r} has no examples")
    return splits, task or "", _task_info(splits)


def _task_info(splits: dict[str, list[Example]]) -> dict:
    """The task.json keys that stage 3 reads, for examples given without one (as RawTask.kind tells them)."""
    examples = [e for rows in splits.values() for e in rows]
    return {"primary_metric": "accuracy", "kind": RawTask("", tuple(examples)).kind}


class SubspaceArtifact:
    """A learned subspace: decode any point of R^r into any of its DETs, or train a point on a new task."""

    def __init__(self, path: str | Path, backbone: str | None = None, device: str | torch.device = "cpu"):
        self.path = Path(path)
        tensor_file = file_in(self.path, Artifact, "subspace")
        self.subspace, self.inits, self.metadata = load_subspace(tensor_file)
        self.source = tensor_file
        specs = json.loads(self.metadata["dets"])  # stored with sorted keys: keep stage 2's DET order
        self.det_specs: dict[str, dict] = {det: specs[det] for det in self.subspace.dets}
        self.backbone_spec: dict = json.loads(self.metadata["backbone"])
        if backbone is not None:  # the same weights at another path (the artifact names the training one)
            self.backbone_spec["name_or_path"] = str(backbone)
        self.init_seed = int(self.metadata["init_seed"])
        self.train_tasks: list[str] = json.loads(self.metadata["train_tasks"])
        self.device = torch.device(device)
        self.subspace.to(self.device).requires_grad_(False)
        self._models: dict[str, DeltaModel] = {}

    @classmethod
    def load(cls, path: str | Path, backbone: str | None = None, device: str | torch.device = "cpu"):
        return cls(path, backbone, device)

    @property
    def dets(self) -> list[str]:
        return list(self.det_specs)

    @property
    def rank(self) -> int:
        return self.subspace.rank

    def _check_det(self, det: str) -> None:
        if det not in self.det_specs:
            raise KeyError(f"{self.source} has no DET {det!r}; it holds {', '.join(self.dets)}")

    def _point(self, point) -> torch.Tensor:
        point = torch.as_tensor(point, dtype=torch.float32, device=self.device).reshape(-1)
        if point.numel() != self.rank:
            raise ValueError(f"a point of this subspace has {self.rank} numbers, got {point.numel()}")
        return point

    def delta_model(self, det: str) -> DeltaModel:
        """A fresh backbone with DET `det` attached at its theta_init (checked against the artifact's)."""
        self._check_det(det)
        return rebuild_delta_model(self.backbone_spec, self.det_specs[det], self.init_seed,
                                   tensor_digest(self.inits[det]), self.source, self.device)

    def vector(self, det: str, point) -> torch.Tensor:
        """The DET's solution vector at `point`: theta_init + Up(point)."""
        self._check_det(det)
        with torch.no_grad():
            return self.inits[det].to(self.device) + self.subspace.decode(det, self._point(point))

    def decode(self, det: str, point) -> DeltaModel:
        """A DeltaModel of DET `det` holding theta_init + Up(point): `model(batch)` scores, as in every stage."""
        model = self.delta_model(det)
        model.load_vector(self.vector(det, point))
        return model

    def train_intrinsic(self, data, det: str, *, task: str | None = None, steps: int = 32,
                        lrs=(1e-2, 5e-2), batch_size: int = 8, eval_every: int | None = None,
                        eval_batch_size: int = 64, optimizer: str = "adafactor", seed: int = 0,
                        precision: str = "fp32", log=None) -> IntrinsicResult:
        """Train r numbers for DET `det` on a task with the subspace frozen (stage 3's loop and lr grid).

        data: a prepared task folder (train.jsonl, dev.jsonl, optional test.jsonl and task.json), a dict
        {"train": examples, "dev": ..., "test": ...} or one list of examples (then also used as dev);
        examples are deltaspace.tasks.Example or {"input", "candidates", "label"} mappings.
        task: the name filled into the backbone's input template ({task}); default the folder's name.
        """
        self._check_det(det)
        splits, task, info = _task_splits(data, task)
        if det not in self._models:  # the functional forward leaves the model's own tensors at theta_init
            self._models[det] = self.delta_model(det)
        model = self._models[det]
        stage = {"lrs": list(lrs), "optimizer": optimizer, "steps": steps, "batch_size": batch_size,
                 "eval_every": eval_every or steps, "eval_batch_size": eval_batch_size}
        job = Job(self.device, precision, {det: model}, {det: self.inits[det].to(self.device)}, self.backbone_spec)
        form = job.task_format(task, info, splits["train"])
        batches = tokenised_batches(model.backbone, splits, form, stage, seed, self.device)
        found = train_in_subspace(job, det, self.subspace.up[det], batches, stage, seed,
                                  info.get("primary_metric", "accuracy"),
                                  log or (lambda message: None))
        return IntrinsicResult(found["point"], found["dev"], found["test"], found["lr"], found["best_step"],
                               found["history"])

    def export_peft(self, det: str, point, folder: str | Path, provenance: dict | None = None) -> Path:
        """The DET at `point` as a PEFT adapter folder (only DETs that PEFT implements; see deltaspace.export)."""
        model = self.delta_model(det)
        point = self._point(point)
        return save_peft_adapter(model, self.vector(det, point), folder, det,
                                 {"source": str(self.source), "space": "subspace", "point": point.tolist(),
                                  **(provenance or {})})


def load(path: str | Path, backbone: str | None = None, device: str | torch.device = "cpu") -> SubspaceArtifact:
    """Open an artifact folder (or a bare subspace.safetensors). backbone: another path to the same weights."""
    return SubspaceArtifact.load(path, backbone, device)


def write_artifact(subspace_path: str | Path, out, points_path: str | Path | None = None,
                   metrics_path: str | Path | None = None) -> Artifact:
    """Copy decompose's outputs into the Artifact files `out` (or into that folder) and write its model card."""
    from .backbones import detect_kind, resolve_model_path
    from transformers import AutoConfig

    out = Artifact.of(out)
    subspace, inits, meta = load_subspace(subspace_path)  # refuses a truncated or foreign file before copying
    backbone = json.loads(meta["backbone"])
    kind = backbone.get("kind", "auto")
    if kind == "auto":
        kind = detect_kind(AutoConfig.from_pretrained(resolve_model_path(backbone["name_or_path"])))
    metrics = read_json(metrics_path, what="stage-2 metrics") if metrics_path else None
    for source, target in ((subspace_path, out.subspace), (points_path, out.points)):
        if source is not None:
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
    with atomic_path(out.card) as tmp:
        tmp.write_text(model_card(meta, kind, metrics, has_points=points_path is not None))
    return out


def _options(spec: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(spec.items()) if k != "method") or "defaults"


def model_card(meta: dict, kind: str, metrics: dict | None = None, has_points: bool = True) -> str:
    """A short README for the artifact folder: what it is, what it was learned from, how to use it."""
    specs, dims = json.loads(meta["dets"]), json.loads(meta["dims"])
    dets = {det: specs[det] for det in dims}  # stage 2's DET order
    backbone, tasks = json.loads(meta["backbone"]), json.loads(meta["train_tasks"])
    r = int(meta["intrinsic_dim"])
    exportable = [d for d, s in dets.items() if s["method"] in PEFT_METHODS]
    example = exportable[0] if exportable else next(iter(dets))
    lines = [
        f"# deltaspace subspace: r = {r}, {len(dets)} DETs on {backbone['name_or_path']}",
        "",
        "A unified optimization subspace of delta tunings (Yi et al., Findings of EMNLP 2022), learned by",
        "deltaspace stage 2 (joint decomposition of the DETs' stage-1 solutions). A point I of R^r decodes",
        "into DET m as theta_m = init_m + Up_m(I).",
        "",
        f"- Backbone: `{backbone['name_or_path']}` (kind {kind}; input template `{backbone.get('input_template', '{input}')}`)",
        f"- Intrinsic dimension r: {r}",
        f"- Learned from {len(tasks)} task(s): {', '.join(tasks)}",
        f"- init_seed: {meta['init_seed']} (fixes every DET's theta_init; stored in the file as init.<DET>)",
    ]
    if metrics:
        lines.append(f"- Stage 2: {metrics.get('steps')} steps, best step {metrics.get('best_step')}, mean dev "
                     f"metric at a random mixing point {metrics.get('dev_mixed', float('nan')):.4f}, mean relative "
                     f"reconstruction error {metrics.get('mean_relative_reconstruction_error', float('nan')):.4f}")
    lines += ["", "| DET | method | options | parameters D | PEFT export |", "|---|---|---|---|---|"]
    for det, spec in dets.items():
        peft = f"yes ({PEFT_METHODS[spec['method']]}, {TASK_TYPES[kind]})" if spec["method"] in PEFT_METHODS else "no"
        lines.append(f"| {det} | {spec['method']} | {_options(spec)} | {dims[det]:,} | {peft} |")
    lines += [
        "",
        "## Files",
        "",
        f"- `{Artifact.subspace}`: `up.<DET>.weight` (D x r), `down.<DET>.*` (D -> r), `init.<DET>` (theta_init);"
        " metadata: DET specs, backbone spec, init_seed, r, training tasks",
    ]
    if has_points:
        lines.append(f"- `{Artifact.points}`: each training task's point per DET (`i0`...) and reconstruction error")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from deltaspace import artifact",
        'art = artifact.load("path/to/this/folder")  # backbone="..." if its weights moved',
        f'found = art.train_intrinsic("results/data/<task>", det="{example}", steps=32)  # r numbers: found.point',
        f'model = art.decode("{example}", found.point)  # a DeltaModel: model(model.backbone.prepare(examples))',
    ]
    if exportable:
        lines.append(f'art.export_peft("{example}", found.point, "my_adapter")  # PeftModel.from_pretrained(base, ...)')
    lines += ["```", ""]
    return "\n".join(lines)


def export_optimize(intrinsic_path: str | Path, subspace: str | Path, out, backbone: str | None = None,
                    threads: int | None = None) -> Path:
    """An optimize solution (an OptimizeRun intrinsic file: I* of one DET) decoded and saved as a PEFT adapter
    (the PeftAdapter files `out`, or into that folder). subspace: the artifact folder or its subspace file."""
    from .hardware import configure_threads

    configure_threads(threads)
    tensors, meta = load_tensors(intrinsic_path)
    art = load(subspace, backbone)
    art._check_det(meta["det"])
    check_exportable(meta["det"], art.det_specs[meta["det"]]["method"])  # before loading any model
    return art.export_peft(meta["det"], tensors["intrinsic"], out,
                           {"intrinsic": str(intrinsic_path), "task": meta["task"], "seed": int(meta["seed"])})
