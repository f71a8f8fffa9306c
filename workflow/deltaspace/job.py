"""One model job's set-up, shared by every stage that runs the backbone: thread budget, device and precision,
one DeltaModel per DET (each on its own copy of the backbone), the check that given vectors were made from
these DETs' inits, tokenised splits, and scoring a vector or a decoded subspace point."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import torch

from .backbones import Backbone, ScoringBatch, TaskFormat, load_backbone, task_format
from .dets import DeltaModel, build_delta_model
from .evaluate import evaluate, evaluate_examples, prepare_batches
from .hardware import autocast, job_setup
from .io import read_json, tensor_digest
from .paths import TaskData
from .tasks import SPLIT_NAMES, Example, read_split


@dataclass
class Job:
    device: torch.device
    precision: str
    models: dict[str, DeltaModel]
    inits: dict[str, torch.Tensor]  # each DET's theta_init, on the job's device
    backbone_spec: dict = field(default_factory=dict)  # the config's backbone section (its default scoring)

    @property
    def backbone(self) -> Backbone:
        return next(iter(self.models.values())).backbone

    def task_format(self, task: str, task_info: dict, train: list[Example]) -> TaskFormat:
        """How this job feeds the task's examples to the backbone, from its task.json: its scoring mode and, when
        it generates, its decode cap from its training split (Backbone.answer_cap): alike in every stage."""
        form = task_format(task, task_info, self.backbone_spec)
        if form.scoring != "generate":
            return form
        return dataclasses.replace(form, answer_tokens=self.backbone.answer_cap(train))

    def batches(self, examples: list[Example], task: str | TaskFormat, batch_size: int) -> list[ScoringBatch]:
        return prepare_batches(self.backbone, examples, batch_size, task, self.device)

    def score_vector(self, det: str, vector: torch.Tensor, batches: list[ScoringBatch]) -> dict[str, float]:
        """The metrics of DET `det` with its tensors set to `vector` (no gradients, the job's precision): accuracy,
        and any other metric when it is read (tasks.Scores; a caller reads its task's primary metric)."""
        model = self.models[det]
        with torch.no_grad(), autocast(self.precision, self.device):
            return evaluate(lambda b: model.functional_predict(vector, b), batches)

    def score_point(self, det: str, up, point: torch.Tensor, batches: list[ScoringBatch]) -> dict[str, float]:
        """Decode a subspace point through an up-projection, theta = init + Up(point), and score it."""
        return self.score_vector(det, self.decode(det, up, point), batches)

    def score_examples(self, det: str, vector: torch.Tensor, batches: list[ScoringBatch]):
        """score_vector's metrics and each example's predicted text (evaluate_examples): for test evaluations."""
        model = self.models[det]
        with torch.no_grad(), autocast(self.precision, self.device):
            return evaluate_examples(lambda b: model.functional_predict(vector, b), batches)

    def decode(self, det: str, up, point: torch.Tensor) -> torch.Tensor:
        """theta = init + Up(point)."""
        with torch.no_grad(), autocast(self.precision, self.device):
            return self.inits[det] + up(point)


def load_det_models(spec: dict, device, dets: dict[str, dict] | None = None) -> dict[str, DeltaModel]:
    """One DeltaModel per DET (default: spec["dets"]), each on its own copy of the backbone (DETs must not see
    each other)."""
    dets = spec["dets"] if dets is None else dets
    backbone = load_backbone(spec["backbone"], device)
    models = {}
    for i, (det, det_spec) in enumerate(dets.items()):
        copy_of_backbone = backbone if i == len(dets) - 1 else copy.deepcopy(backbone)
        models[det] = build_delta_model(copy_of_backbone, det_spec, spec["init_seed"])
    return models


def check_inits(models: dict[str, DeltaModel], digests: dict[str, str], source) -> None:
    """Deltas only mean something added to the init they were trained from: refuse any other."""
    for det, model in models.items():
        if digests.get(det) != tensor_digest(model.vector()):
            raise ValueError(f"{source} was made from another init of DET {det!r} (backbone, DET options or "
                             f"init_seed differ from this config); rerun the stages before this one")


def start_job(spec: dict, threads: int | None, dets: dict[str, dict] | None = None,
              init_digests: dict[str, str] | None = None, source=None) -> Job:
    """The set-up of every model stage. init_digests (with the file they came from, `source`): refuse to run
    when the rebuilt DETs' inits differ from those the job's input vectors were made from."""
    device, precision = job_setup(spec, threads)
    models = load_det_models(spec, device, dets)
    if init_digests is not None:
        check_inits(models, init_digests, source)
    return Job(device, precision, models, {det: m.vector().to(device) for det, m in models.items()}, spec["backbone"])


def load_task_splits(data, task: str):
    """(split name -> examples, the task's summary) from prepare_task's files (TaskData, or their folder);
    an empty split is an error naming its file."""
    data = TaskData.of(data)
    splits = {name: read_split(data.split(name)) for name in SPLIT_NAMES}
    for name, examples in splits.items():
        if not examples:
            raise ValueError(f"task {task!r}: split {data.split(name)} is empty; rerun prepare_task")
    return splits, read_json(data.summary, what=f"task {task!r} summary")


def batch_order(n_examples: int, batch_size: int, steps: int, seed: int) -> torch.Tensor:
    """(steps, batch_size) example indices: epochs of seeded permutations, fixed before training starts."""
    generator = torch.Generator().manual_seed(seed)
    needed = steps * batch_size
    epochs = -(-needed // n_examples)
    order = torch.cat([torch.randperm(n_examples, generator=generator) for _ in range(epochs)])
    return order[:needed].view(steps, batch_size)
