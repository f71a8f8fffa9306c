"""Stage 3's batched loop (intrinsic_batched.py: the three subspaces' vectors and every lr in one forward pass
per step) against the one-at-a-time loop (optimize.train_intrinsic), the second implementation it must match:
in fp32 the same choices (lr, step, best training point), dev and test scores, histories and predictions, and
points within POINT_TOLERANCE (the batched matmuls sum in another order, so the last bits may differ). Also its
selection against a script of dev scores, and the fallback of a DET that declares vmap = False."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from conftest import TINY_DETS

import deltaspace.decompose as decompose_stage
import deltaspace.grid_eval as grid_eval
import deltaspace.intrinsic_batched as batched_module
import deltaspace.optimize as optimize_stage
from deltaspace.dets import METHODS
from deltaspace.io import load_tensors

# |batched - sequential| of any trained intrinsic coordinate, fp32 (measured: at most 1.2e-8 on the tiny models).
POINT_TOLERANCE = 1e-6
CHOICES = ("lr", "best_step", "dev", "test", "svd_lr", "svd_dev", "svd_test", "random_lr", "random_dev",
           "random_test", "best_train_point_dev", "best_train_point_test", "best_train_point_from", "init_test")
HISTORIES = ("history", "svd_history", "random_history")


@pytest.fixture(scope="module")
def stage2(tiny_stage1, tmp_path_factory):
    """The tiny run's subspace (train task a) and a stage-3 spec with two lrs and three dev steps each."""
    root, spec, data_dirs = tiny_stage1
    out = tmp_path_factory.mktemp("stage2")
    decompose_stage.decompose(spec, root / "vectors", {"a": data_dirs["a"]}, out, out / "ck", log=lambda m: None)
    spec = {**spec, "optimize": {**spec["optimize"], "lrs": [1e-2, 2e-1], "steps": 6, "eval_every": 2}}
    return out, spec, data_dirs


def run(stage2, det, folder, batched, **kwargs):
    subspace, spec, data_dirs = stage2
    return optimize_stage.optimize("b", det, 42, spec, subspace, data_dirs["b"], folder, log=lambda m: None,
                                   batched=batched, **kwargs)


@pytest.mark.parametrize("det, one_per_pass", [(det, False) for det in sorted(TINY_DETS)] + [("lora", True)])
def test_batched_stage3_makes_the_sequential_loops_choices_and_scores(stage2, det, one_per_pass, tmp_path,
                                                                      monkeypatch):
    if one_per_pass:  # a pass too small for two points: dev is scored one vector at a time (as on a CPU)
        monkeypatch.setitem(grid_eval.TARGET_TOKENS, "cpu", 1)
    results = {batched: run(stage2, det, tmp_path / str(batched), batched) for batched in (False, True)}
    sequential, batched = results[False], results[True]
    assert sorted(batched) == sorted(sequential)
    assert {k: batched[k] for k in CHOICES} == {k: sequential[k] for k in CHOICES}
    for key in HISTORIES:
        assert [(h["lr"], h["step"], h["dev"]) for h in batched[key]] == \
               [(h["lr"], h["step"], h["dev"]) for h in sequential[key]]
        trained = [[h["train_loss"] for h in run[key] if h["step"] > 0] for run in (batched, sequential)]
        assert [h["train_loss"] for h in batched[key] if h["step"] == 0] == [None, None]  # the start: no loss
        assert trained[0] == pytest.approx(trained[1], rel=1e-5)
    points = {b: load_tensors(tmp_path / str(b) / "intrinsic.safetensors") for b in (False, True)}
    assert points[True][1] == points[False][1]  # metadata, the chosen lr included
    for name, point in points[False][0].items():
        torch.testing.assert_close(points[True][0][name], point, rtol=0, atol=POINT_TOLERANCE)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "True" / "predictions.csv"),
                                  pd.read_csv(tmp_path / "False" / "predictions.csv"))
    assert json.loads((tmp_path / "True" / "result.json").read_text()).keys() == sequential.keys()


def test_batched_selection_keeps_the_best_dev_of_every_lr_per_subspace(stage2, tmp_path, monkeypatch):
    """Scripted dev scores: first the three subspaces' shared start (step 0), then one call per dev step holding
    every run (subspace-major, then lr): each subspace's best is neither its last dev step nor its last lr's,
    and the svd subspace's start outscores all its training, so it keeps the start (lr None, step 0)."""
    lrs = stage2[1]["optimize"]["lrs"]
    # runs: (learned, 1e-2), (learned, 2e-1), (svd, 1e-2), (svd, 2e-1), (random, 1e-2), (random, 2e-1)
    script = [[0.3, 0.85, 0.5],
              [0.5, 0.1, 0.2, 0.3, 0.1, 0.1], [0.9, 0.2, 0.1, 0.8, 0.1, 0.6], [0.4, 0.3, 0.1, 0.2, 0.1, 0.2]]
    real = batched_module.dev_scores

    def scripted(job, det, vectors, n_points, dev, primary):
        if not isinstance(vectors, torch.Tensor):
            return real(job, det, vectors, n_points, dev, primary)  # best_train_point's candidates
        return script.pop(0)

    monkeypatch.setattr(batched_module, "dev_scores", scripted)
    result = run(stage2, "lora", tmp_path, True)
    assert script == []
    assert (result["lr"], result["best_step"], result["dev"]) == (lrs[0], 4, 0.9)
    assert (result["svd_lr"], result["svd_dev"]) == (None, 0.85)
    assert (result["random_lr"], result["random_dev"]) == (lrs[1], 0.6)
    assert [(h["lr"], h["step"], h["dev"]) for h in result["history"]] == \
           [(lrs[0], 0, 0.3), (lrs[1], 0, 0.3), (lrs[0], 2, 0.5), (lrs[0], 4, 0.9), (lrs[0], 6, 0.4), (lrs[1], 2, 0.1), (lrs[1], 4, 0.2), (lrs[1], 6, 0.3)]


def test_a_det_without_vmap_takes_the_sequential_loop(stage2, tmp_path, monkeypatch):
    monkeypatch.setattr(METHODS["lora"], "vmap", False)

    def refuse(*args, **kwargs):
        raise AssertionError("a vmap = False DET reached the batched loop")

    monkeypatch.setattr(optimize_stage, "train_intrinsic_batched", refuse)
    result = run(stage2, "lora", tmp_path, None)
    assert len(result["history"]) == 8  # the start under each of 2 lrs, then 3 dev steps each
