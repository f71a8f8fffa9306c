"""Stage 2's diagnostics against hand computations, its warnings, a diverging stage 2 reported as such, and the
split its checkpoint choice reads (dev, never train or test)."""
from __future__ import annotations

import json
import math
from collections import Counter

import pytest
import torch

import deltaspace.decompose as decompose_stage
import deltaspace.job as job_module
from deltaspace.subspace import Subspace
from deltaspace.subspace_health import health_warnings, diagnose


def _hand_subspace() -> Subspace:
    """One DET in R^3, r = 1: Down(d) = tanh(d_0), Up(p) = (p, 0, 0)."""
    subspace = Subspace({"m": 3}, 1)
    with torch.no_grad():
        down = subspace.down["m"]
        down.first.weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
        down.first.bias.zero_()
        down.second.weight.copy_(torch.tensor([[1.0]]))
        down.second.bias.zero_()
        subspace.up["m"].weight.copy_(torch.tensor([[1.0], [0.0], [0.0]]))
    return subspace


def test_diagnostics_equal_a_hand_computation():
    deltas = torch.tensor([[2.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    report = diagnose(_hand_subspace(), {"m": deltas})["m"]
    p1, p2 = math.tanh(2.0), math.tanh(3.0)  # 0.964 (not saturated), 0.99505 (saturated)
    error1 = abs(2.0 - p1) / 2.0
    error2 = math.sqrt((3.0 - p2) ** 2 + 16.0) / 5.0
    assert report["relative_error"] == pytest.approx((error1 + error2) / 2, rel=1e-6)
    assert report["saturated"] == pytest.approx(0.5)
    assert report["point_norm"] == pytest.approx((p1 + p2) / 2, rel=1e-6)


def test_a_zero_reconstruction_has_relative_error_one():
    subspace = _hand_subspace()
    with torch.no_grad():
        subspace.up["m"].weight.zero_()
    assert diagnose(subspace, {"m": torch.tensor([[0.5, 1.0, -2.0]])})["m"]["relative_error"] == pytest.approx(1.0)


def _entry(step, dev, error, saturated=0.0):
    return {"step": step, "dev_mixed": dev, "dets": {"m": {"relative_error": error, "saturated": saturated,
                                                           "point_norm": 1.0}}}


def test_warnings_name_each_way_the_saved_or_last_subspace_is_worse():
    start = _entry(0, 0.80, 0.25)
    assert health_warnings(start, _entry(30, 0.82, 0.29), _entry(30, 0.82, 0.29)) == []  # within 0.05, better dev
    said = health_warnings(start, _entry(30, 0.78, 1.20, saturated=0.5))
    assert len(said) == 3
    assert "1.200" in said[0] and "worse than reconstructing nothing" in said[0]
    assert "50%" in said[1] and "0.7800" in said[2]
    # A kept start hides nothing: the last checkpoint's damage is said too.
    said = health_warnings(start, start, _entry(60, 0.70, 0.90))
    assert len(said) == 2 and all(s.startswith("training ended worse than it started") for s in said)


def test_a_diverging_stage2_is_reported_worse_than_its_start(tiny_stage1, tmp_path):
    root, spec, data_dirs = tiny_stage1
    spec = {**spec, "decompose": {**spec["decompose"], "lr": 1.0, "steps": 4, "eval_every": 2}}
    logged = []
    metrics = decompose_stage.decompose(spec, root / "vectors", data_dirs, tmp_path / "s2", tmp_path / "ck",
                                        log=logged.append)
    history = metrics["history"]
    assert [h["step"] for h in history] == [0, 2, 4]  # the start is the first point of every curve
    assert metrics["start"] == history[0]
    last_errors = {det: d["relative_error"] for det, d in history[-1]["dets"].items()}
    start_errors = {det: d["relative_error"] for det, d in history[0]["dets"].items()}
    assert all(last_errors[det] > start_errors[det] + 0.05 for det in start_errors), (start_errors, last_errors)
    assert metrics["warnings"], "a stage 2 that wrecked its start passed silently"
    assert any(line.startswith("[decompose] WARNING:") for line in logged)
    written = json.loads((tmp_path / "s2" / "metrics.json").read_text())
    assert written["warnings"] == metrics["warnings"] and written["start"]["step"] == 0


def test_stage2_checkpoint_choice_scores_the_dev_split_and_nothing_else(tiny_stage1, tmp_path, monkeypatch):
    root, spec, data_dirs = tiny_stage1
    k = 5  # decompose.dev_examples: the first k dev examples, fewer than the dev split holds
    spec = {**spec, "decompose": {**spec["decompose"], "dev_examples": k, "steps": 2, "eval_every": 2}}
    scored = Counter()
    real = job_module.Job.score_point

    def spy(self, det, up, point, batches):
        scored.update(example.input for batch in batches for example in batch.examples)
        return real(self, det, up, point, batches)

    monkeypatch.setattr(job_module.Job, "score_point", spy)
    decompose_stage.decompose(spec, root / "vectors", data_dirs, tmp_path / "s2", tmp_path / "ck", log=lambda m: None)

    def inputs(split):
        return [json.loads(line)["input"] for line in (data_dirs["a"] / f"{split}.jsonl").read_text().splitlines()]

    dev, train = inputs("dev"), inputs("train")
    assert set(scored) == set(dev[:k]), "stage 2's checkpoint choice scored examples outside the dev split's first k"
    assert Counter(dev[:k]) != Counter(train[:k])  # the check above could tell train from dev
    n_dets, n_evaluations = len(spec["dets"]), 2  # step 0 and step 2, each DET at the mixed point
    assert sum(scored.values()) == k * n_dets * n_evaluations
