"""Model selection in every stage and every table column, against values written or scripted here.

Selection: `evaluate` (stages 1 and 3) or the mixed dev score (stage 2) is replaced by a script of dev scores
whose best is neither the last evaluation nor the last lr; the kept vector, subspace or point must be the one
scored at the scripted best, and the test split may only be scored once, after the choice, on it alone.
Tables: raw stage-1 metrics, stage-3 results and transfer scores are written here with dev != test
everywhere, and every column is checked against numbers worked out by hand."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from conftest import TINY_DETS
from test_original import spec_for, write_task

import deltaspace.job as job_module
import deltaspace.original as original_stage
import deltaspace.decompose as decompose_stage
import deltaspace.optimize as optimize_stage
from deltaspace.backbones import load_backbone
from deltaspace.dets import build_delta_model
from deltaspace.io import load_tensors
from deltaspace.subspace import load_subspace
from deltaspace.summary import relative_section, transfer_section
from deltaspace.tables import relative_performance_table, original_table, transfer_table

DEV_SIZE, TEST_SIZE = 8, 12  # the script tells the splits apart by size


class ScriptedEvaluate:
    """Stands in for `evaluate`: a dev split gets the next scripted score, any other split a real evaluation.
    Every call records the scores the evaluated vector gives on the split's first batch (its fingerprint)."""

    def __init__(self, real, dev_scores):
        self.real, self.dev_scores, self.calls = real, list(dev_scores), []

    def __call__(self, score, batches):
        with torch.no_grad():
            fingerprint = score(batches[0]).detach().clone()
        split = "dev" if sum(len(b.labels) for b in batches) == DEV_SIZE else "test"
        self.calls.append((split, fingerprint, batches[0]))
        if split == "dev":
            value = self.dev_scores.pop(0)
            return {"accuracy": value, "macro_f1": value}
        return self.real(score, batches)

    def kinds(self):
        return [split for split, _, _ in self.calls]


def _flip_test_labels(folder):
    """The same task with every test label changed: a choice made on dev alone cannot move."""
    path = folder / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({**r, "label": 1 - r["label"]}) + "\n" for r in rows))


# ---- stage 1: the best dev checkpoint is the delta kept -------------------------------------------------------


def test_stage1_keeps_the_best_dev_checkpoint_not_the_last_and_never_looks_at_test(tiny_model_dirs, tmp_path,
                                                                                   monkeypatch):
    spec = spec_for(tiny_model_dirs["encoder"], "lora", steps=6)  # dev at steps 2, 4, 6
    chosen = {}
    for variant in ("plain", "flipped_test"):
        data = write_task(tmp_path / variant / "data", n=(24, DEV_SIZE, TEST_SIZE))
        if variant == "flipped_test":
            _flip_test_labels(data)
        scripted = ScriptedEvaluate(original_stage.evaluate, [0.2, 0.5, 0.9, 0.6])  # theta_init, then steps 2, 4, 6
        monkeypatch.setattr(original_stage, "evaluate", scripted)
        metrics = original_stage.train_det("toy", "lora", 42, spec, data, tmp_path / variant / "out", tmp_path / variant / "ck",
                                   log=lambda m: None)
        assert scripted.kinds() == ["dev"] * 4 + ["test"]
        assert metrics["best_step"] == 4 and metrics["dev"] == 0.9 and metrics["init_dev"] == 0.2
        assert [h["dev_accuracy"] for h in metrics["history"]] == [0.5, 0.9, 0.6]

        delta = load_tensors(tmp_path / variant / "out" / "delta.safetensors")[0]["delta"]
        model = build_delta_model(load_backbone(spec["backbone"]), spec["det"], spec["init_seed"])
        model.load_vector(model.vector() + delta)
        (_, at_step4, dev_batch), (_, at_step6, _) = scripted.calls[2], scripted.calls[3]
        test_fingerprint, test_batch = scripted.calls[4][1], scripted.calls[4][2]
        with torch.no_grad():
            torch.testing.assert_close(model(dev_batch), at_step4)
            assert not torch.allclose(model(dev_batch), at_step6)
            torch.testing.assert_close(model(test_batch), test_fingerprint)  # test scored at the kept vector
        chosen[variant] = (metrics["best_step"], delta, metrics["test"])
    assert torch.equal(chosen["plain"][1], chosen["flipped_test"][1])
    assert chosen["plain"][2] == pytest.approx(1 - chosen["flipped_test"][2])  # test really differed


# ---- stage 2: the best mixed-dev subspace is the one saved ----------------------------------------------------


def test_stage2_saves_the_subspace_of_the_best_mixed_dev_score_not_the_last(tiny_stage1, tmp_path, monkeypatch):
    root, spec, data_dirs = tiny_stage1
    spec = {**spec, "decompose": {**spec["decompose"], "steps": 6, "eval_every": 2}}
    script = [0.4, 0.8, 0.5]
    monkeypatch.setattr(decompose_stage, "mixed_dev_score", lambda *args, **kwargs: script.pop(0))
    checkpoints = {}

    def remember(step):
        state = torch.load(tmp_path / "ck", weights_only=True)  # the checkpoint file
        checkpoints[step] = {k: v.clone() for k, v in state["subspace"].items()}

    metrics = decompose_stage.decompose(spec, root / "vectors", data_dirs, tmp_path / "s2", tmp_path / "ck",
                               log=lambda m: None, on_checkpoint=remember)
    assert metrics["best_step"] == 4 and metrics["dev_mixed"] == 0.8 and sorted(checkpoints) == [2, 4, 6]
    saved, _, _ = load_subspace(tmp_path / "s2" / "subspace.safetensors")
    for det in TINY_DETS:
        torch.testing.assert_close(saved.up[det].weight, checkpoints[4][f"up.{det}.weight"], rtol=0, atol=0)
        assert not torch.equal(saved.up[det].weight, checkpoints[6][f"up.{det}.weight"])
        torch.testing.assert_close(saved.down[det].first.weight, checkpoints[4][f"down.{det}.first.weight"],
                                   rtol=0, atol=0)


# ---- stage 3: the best dev point and lr, for the learned and the random subspace ------------------------------


def test_stage3_keeps_the_best_dev_point_and_lr_and_scores_test_once_at_it(tiny_stage1, tmp_path, monkeypatch):
    root, spec, _ = tiny_stage1
    subspace_out = tmp_path / "s2"
    decompose_stage.decompose(spec, root / "vectors", {"a": root / "data" / "a"}, subspace_out, tmp_path / "ck",
                     log=lambda m: None)
    spec = {**spec, "optimize": {**spec["optimize"], "steps": 4, "eval_every": 2}}  # dev at (lr1: 2, 4), (lr2: 2, 4)
    subspace, inits, _ = load_subspace(subspace_out / "subspace.safetensors")
    model = build_delta_model(load_backbone(spec["backbone"]), TINY_DETS["lora"], spec["init_seed"])
    chosen = {}
    for variant in ("plain", "flipped_test"):
        data = write_task(tmp_path / variant / "data", n=(24, DEV_SIZE, TEST_SIZE))
        if variant == "flipped_test":
            _flip_test_labels(data)
        # learned: best at lr 1e-2 step 2 (first lr, not its last step); random: best at lr 5e-2 step 2.
        scripted = ScriptedEvaluate(job_module.evaluate, [0.8, 0.4, 0.6, 0.7] + [0.3, 0.2, 0.5, 0.1])
        monkeypatch.setattr(job_module, "evaluate", scripted)  # every stage scores points through the job
        result = optimize_stage.optimize("t", "lora", 42, spec, subspace_out / "subspace.safetensors", data,
                                       tmp_path / variant / "out", log=lambda m: None)
        assert scripted.kinds() == ["dev"] * 4 + ["test"] + ["dev"] * 4 + ["test"]
        assert (result["lr"], result["best_step"], result["dev"]) == (1e-2, 2, 0.8)
        assert (result["random_lr"], result["random_dev"]) == (5e-2, 0.5)
        assert [h["dev"] for h in result["history"]] == [0.8, 0.4, 0.6, 0.7]

        points = load_tensors(tmp_path / variant / "out" / "intrinsic.safetensors")[0]
        random_up = optimize_stage.random_up_projection(subspace.up["lora"], 42)
        dev_batch = scripted.calls[0][2]
        with torch.no_grad():
            learned_vector = inits["lora"] + subspace.up["lora"](points["intrinsic"])
            random_vector = inits["lora"] + random_up(points["random_intrinsic"])
            torch.testing.assert_close(model.functional_scores(learned_vector, dev_batch), scripted.calls[0][1])
            torch.testing.assert_close(model.functional_scores(random_vector, dev_batch), scripted.calls[7][1])
            torch.testing.assert_close(model.functional_scores(learned_vector, scripted.calls[4][2]),
                                       scripted.calls[4][1])
            torch.testing.assert_close(model.functional_scores(random_vector, scripted.calls[9][2]),
                                       scripted.calls[9][1])
        chosen[variant] = (points["intrinsic"], points["random_intrinsic"], result["test"])
    assert torch.equal(chosen["plain"][0], chosen["flipped_test"][0])
    assert torch.equal(chosen["plain"][1], chosen["flipped_test"][1])
    assert chosen["plain"][2] == pytest.approx(1 - chosen["flipped_test"][2])


# ---- tables ---------------------------------------------------------------------------------------------------

# (task, det) -> stage-1 (dev, test); stage-3 (dev, test, random_dev, random_test). Dev never equals test.
STAGE1 = {("t1", "lora"): (0.90, 0.80), ("t1", "prefix"): (0.70, 0.60),
          ("t2", "lora"): (0.85, 0.50), ("t2", "prefix"): (0.35, 0.0)}
STAGE3 = {("t1", "lora"): (0.95, 0.60, 0.55, 0.40), ("t1", "prefix"): (0.65, 0.48, 0.52, 0.33),
          ("t2", "lora"): (0.75, 0.45, 0.62, 0.25), ("t2", "prefix"): (0.30, 0.20, 0.28, 0.10)}
SEED = 7


def _write_runs(root):
    stage1_runs, stage3_runs = [], []
    for (task, det), (dev, test) in STAGE1.items():
        run = root / "stage1" / task / det
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({
            "task": task, "det": det, "method": det, "seed": SEED, "params": 10, "primary_metric": "accuracy",
            "dev": dev, "test": test, "test_metrics": {"accuracy": test, "macro_f1": test / 2}, "majority": 0.55,
            "init_dev": 0.31, "best_step": 4, "steps": 6}))
        stage1_runs.append(run)
    for (task, det), (dev, test, random_dev, random_test) in STAGE3.items():
        run = root / "stage3" / task / det
        run.mkdir(parents=True)
        (run / "result.json").write_text(json.dumps({
            "task": task, "det": det, "seed": SEED, "dev": dev, "test": test, "random_dev": random_dev,
            "random_test": random_test, "lr": 0.05}))
        stage3_runs.append(run)
    original_table(stage1_runs, root / "original.csv")
    return stage1_runs, stage3_runs


def test_original_table_reports_test_not_dev(tmp_path):
    _write_runs(tmp_path)
    table = pd.read_csv(tmp_path / "original.csv").set_index(["task", "det"])
    assert table.loc[("t1", "lora"), "test"] == 0.80 and table.loc[("t1", "lora"), "dev"] == 0.90
    assert table.loc[("t1", "prefix"), "test_macro_f1"] == 0.30 and table.loc[("t1", "prefix"), "init_dev"] == 0.31


def test_relative_columns_are_test_scores_over_own_space_test_and_empty_where_own_space_is_zero(tmp_path):
    _, stage3_runs = _write_runs(tmp_path)
    relative_performance_table(stage3_runs, tmp_path / "original.csv", {"t1": "unseen", "t2": "unseen"},
                               tmp_path / "relative.csv", tmp_path / "relative.md")
    raw = pd.read_csv(tmp_path / "relative.csv", dtype=str, keep_default_na=False).set_index(["task", "det"])
    table = pd.read_csv(tmp_path / "relative.csv").set_index(["task", "det"])
    # By hand: 0.60 / 0.80, 0.40 / 0.80; 0.48 / 0.60, 0.33 / 0.60; 0.45 / 0.50, 0.25 / 0.50.
    expected = {("t1", "lora"): (75.0, 50.0), ("t1", "prefix"): (80.0, 55.0), ("t2", "lora"): (90.0, 50.0)}
    for key, (relative, random_relative) in expected.items():
        assert table.loc[key, "relative"] == pytest.approx(relative)
        assert table.loc[key, "random_relative"] == pytest.approx(random_relative)
    assert table.loc[("t1", "lora"), "own_space"] == 0.80 and table.loc[("t1", "lora"), "subspace"] == 0.60
    assert table.loc[("t1", "lora"), "random_subspace"] == 0.40 and table.loc[("t1", "lora"), "majority"] == 0.55
    # own space 0: no ratio (an empty cell, never inf)
    assert raw.loc[("t2", "prefix"), "relative"] == "" and raw.loc[("t2", "prefix"), "random_relative"] == ""
    assert "inf" not in (tmp_path / "relative.csv").read_text()
    # The per-DET means: lora (75 + 90) / 2, random (50 + 50) / 2; prefix over its one defined ratio.
    text = (tmp_path / "relative.md").read_text()
    rows = {line.split(" | ")[1]: line.strip("| ").split(" | ") for line in text.splitlines() if line.startswith("| unseen")}
    assert rows["lora"][2] == "0.65" and rows["lora"][5:] == ["82.5", "50.0"]  # own space (0.80 + 0.50) / 2
    assert rows["prefix"][5:] == ["80.0", "55.0"]
    section, frame = relative_section(tmp_path / "relative.csv", tmp_path / "original.csv")
    rows = frame.set_index("det")
    assert rows.loc["lora", "relative (%)"] == "82.5" and rows.loc["lora", "random relative (%)"] == "50.0"
    assert rows.loc["prefix", "relative (%)"] == "80.0" and "inf" not in section


def test_transfer_relative_is_the_target_dets_score_over_its_own_space(tmp_path):
    _write_runs(tmp_path)
    scores = {("lora", "lora"): 0.60, ("lora", "prefix"): 0.42, ("prefix", "lora"): 0.64, ("prefix", "prefix"): 0.48}
    csv = tmp_path / "transfer" / "t1.csv"
    csv.parent.mkdir()
    pd.DataFrame([{"task": "t1", "seed": SEED, "source_det": s, "target_det": t, "score": v, "source": "x"}
                  for (s, t), v in scores.items()]).to_csv(csv, index=False)
    table = transfer_table([csv], tmp_path / "original.csv", tmp_path / "transfer.csv", tmp_path / "transfer.md")
    relative = table.set_index(["source_det", "target_det"])["relative"]
    # own space of the TARGET DET on t1: lora 0.80, prefix 0.60.
    assert relative[("lora", "prefix")] == pytest.approx(70.0) and relative[("prefix", "lora")] == pytest.approx(80.0)
    assert relative[("lora", "lora")] == pytest.approx(75.0) and relative[("prefix", "prefix")] == pytest.approx(80.0)
    assert "Mean over all pairs: 75.0" in (tmp_path / "transfer.md").read_text()
    section, _ = transfer_section(tmp_path / "transfer.csv", [csv])
    assert "Mean over the off-diagonal pairs: 75.0%" in section
