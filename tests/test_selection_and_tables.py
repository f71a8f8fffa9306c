"""Model selection in every stage and every table column, against values written or scripted here.

Selection: `evaluate` (stages 1 and 3) or the mixed dev score (stage 2) is replaced by a script of dev scores
whose best is neither the last evaluation nor the last lr; the kept vector, subspace or point must be the one
scored at the scripted best, and the test split may only be scored once, after the choice, on it alone
(besides theta_init's test score, the floor, taken before any choice). Test scores go through
`evaluate_examples`, which the script records too.
Tables: raw stage-1 metrics, stage-3 results (with their per-example predictions) and transfer scores are
written here with dev != test everywhere, and every column is checked against numbers worked out by hand."""
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
from deltaspace.subspace import UpProjection, load_subspace
from deltaspace.summary import intervals_section, relative_section, transfer_section
from deltaspace.tables import relative_performance_table, original_table, transfer_table

DEV_SIZE, TEST_SIZE = 8, 12  # the script tells the splits apart by size


class ScriptedEvaluate:
    """Stands in for `evaluate` (__call__) and `evaluate_examples` (examples): a dev split gets the next
    scripted score, any other split a real evaluation. Every call records the scores the evaluated vector gives
    on the split's first batch (its fingerprint); test evaluations go through evaluate_examples, so a dev split
    there, or a test split through plain evaluate, is recorded under its own kind and fails the call sequence."""

    def __init__(self, real, dev_scores, real_examples=None):
        self.real, self.real_examples = real, real_examples
        self.dev_scores, self.calls = list(dev_scores), []

    def _record(self, score, batches, through):
        with torch.no_grad():
            fingerprint = score(batches[0]).detach().clone()
        split = "dev" if sum(len(b.labels) for b in batches) == DEV_SIZE else "test"
        self.calls.append((split if through == {"dev": "evaluate", "test": "examples"}[split] else f"{split} via {through}",
                           fingerprint, batches[0]))
        return split

    def __call__(self, score, batches, metrics=("accuracy",)):
        if self._record(score, batches, "evaluate") == "dev":
            value = self.dev_scores.pop(0)
            return {name: value for name in ("accuracy", *metrics)}
        return self.real(score, batches, metrics)

    def examples(self, score, batches, metrics=("accuracy",)):
        self._record(score, batches, "examples")
        return self.real_examples(score, batches, metrics)

    def install(self, monkeypatch, module):
        monkeypatch.setattr(module, "evaluate", self)
        monkeypatch.setattr(module, "evaluate_examples", self.examples)

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
        scripted = ScriptedEvaluate(original_stage.evaluate, [0.2, 0.5, 0.9, 0.6],  # theta_init, then steps 2, 4, 6
                                    original_stage.evaluate_examples)
        scripted.install(monkeypatch, original_stage)
        metrics = original_stage.train_det("toy", "lora", 42, spec, data, tmp_path / variant / "out", tmp_path / variant / "ck",
                                   log=lambda m: None)
        # theta_init on test (the floor, before any choice), theta_init on dev, steps 2, 4, 6 on dev, the kept on test
        assert scripted.kinds() == ["test"] + ["dev"] * 4 + ["test"]
        assert metrics["best_step"] == 4 and metrics["dev"] == 0.9 and metrics["init_dev"] == 0.2
        assert [h["dev_accuracy"] for h in metrics["history"]] == [0.5, 0.9, 0.6]

        delta = load_tensors(tmp_path / variant / "out" / "delta.safetensors")[0]["delta"]
        model = build_delta_model(load_backbone(spec["backbone"]), spec["det"], spec["init_seed"])
        (_, init_fingerprint, init_test_batch) = scripted.calls[0]
        with torch.no_grad():
            torch.testing.assert_close(model(init_test_batch), init_fingerprint)  # the init test: theta_init itself
        model.load_vector(model.vector() + delta)
        (_, at_step4, dev_batch), (_, at_step6, _) = scripted.calls[3], scripted.calls[4]
        test_fingerprint, test_batch = scripted.calls[5][1], scripted.calls[5][2]
        with torch.no_grad():
            torch.testing.assert_close(model(dev_batch), at_step4)
            assert not torch.allclose(model(dev_batch), at_step6)
            torch.testing.assert_close(model(test_batch), test_fingerprint)  # test scored at the kept vector
        chosen[variant] = (metrics["best_step"], delta, metrics["test"], metrics["init_test"])
    assert torch.equal(chosen["plain"][1], chosen["flipped_test"][1])
    assert chosen["plain"][2] == pytest.approx(1 - chosen["flipped_test"][2])  # test really differed
    assert chosen["plain"][3] == pytest.approx(1 - chosen["flipped_test"][3])  # so did the init test, at the same theta


# ---- stage 2: the best mixed-dev subspace is the one saved ----------------------------------------------------


def test_stage2_saves_the_subspace_of_the_best_mixed_dev_score_not_the_last(tiny_stage1, tmp_path, monkeypatch):
    root, spec, data_dirs = tiny_stage1
    spec = {**spec, "decompose": {**spec["decompose"], "steps": 6, "eval_every": 2}}
    script = [0.3, 0.4, 0.8, 0.5]  # the start (step 0), then steps 2, 4, 6
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
    svd_subspace, _, _ = load_subspace(subspace_out / "svd_subspace.safetensors")
    points_csv = pd.read_csv(subspace_out / "points.csv")
    assert len(points_csv) == 2  # task a's point through each of the two DETs
    model = build_delta_model(load_backbone(spec["backbone"]), TINY_DETS["lora"], spec["init_seed"])
    chosen = {}
    for variant in ("plain", "flipped_test"):
        data = write_task(tmp_path / variant / "data", n=(24, DEV_SIZE, TEST_SIZE))
        if variant == "flipped_test":
            _flip_test_labels(data)
        # Each subspace: its start (step 0), then 4 dev steps. learned: best at lr 1e-2 step 2 (first lr, not its
        # last step); svd: best at lr 1e-2 step 4; random: the start beats every trained step, so it is kept;
        # best training point: the second row of points.csv.
        scripted = ScriptedEvaluate(job_module.evaluate, [0.5, 0.8, 0.4, 0.6, 0.7] + [0.1, 0.2, 0.9, 0.3, 0.1]
                                    + [0.55, 0.3, 0.2, 0.5, 0.1] + [0.35, 0.65], job_module.evaluate_examples)
        scripted.install(monkeypatch, job_module)  # every stage scores points through the job
        # The one-at-a-time loop, whose dev scores go through `evaluate`; the batched loop's selection is scripted
        # in tests/test_optimize_batched.py.
        result = optimize_stage.optimize("t", "lora", 42, spec, subspace_out, data, tmp_path / variant / "out",
                                         log=lambda m: None, batched=False)
        # init on test; learned, svd and random: 4 dev then 1 test each; the 2 training points on dev, then 1 test
        assert scripted.kinds() == ["test"] + (["dev"] * 5 + ["test"]) * 3 + ["dev"] * 2 + ["test"]
        assert scripted.dev_scores == []
        assert (result["lr"], result["best_step"], result["dev"]) == (1e-2, 2, 0.8)
        assert (result["svd_lr"], result["svd_dev"]) == (1e-2, 0.9)
        assert (result["random_lr"], result["random_dev"]) == (None, 0.55)
        assert [(h["step"], h["dev"]) for h in result["history"]] == [(0, 0.5), (0, 0.5), (2, 0.8), (4, 0.4),
                                                                      (2, 0.6), (4, 0.7)]
        assert [h["dev"] for h in result["svd_history"]] == [0.1, 0.1, 0.2, 0.9, 0.3, 0.1]
        second = points_csv.iloc[1]
        assert result["best_train_point_dev"] == 0.65
        assert result["best_train_point_from"] == {"task": second["task"], "seed": int(second["seed"]),
                                                   "det": second["det"]}

        points = load_tensors(tmp_path / variant / "out" / "intrinsic.safetensors")[0]
        random_up = optimize_stage.random_up_projection(subspace.up["lora"], 42)
        dev_batch = scripted.calls[1][2]
        train_point = torch.tensor([second[f"i{k}"] for k in range(subspace.rank)], dtype=torch.float32)
        # the random subspace kept its start: the seeded draw every lr begins from
        torch.testing.assert_close(points["random_intrinsic"],
                                   torch.randn(subspace.rank, generator=torch.Generator().manual_seed(42)) * 0.02)
        with torch.no_grad():
            learned_vector = inits["lora"] + subspace.up["lora"](points["intrinsic"])
            svd_vector = inits["lora"] + svd_subspace.up["lora"](points["svd_intrinsic"])
            random_vector = inits["lora"] + random_up(points["random_intrinsic"])
            train_point_vector = inits["lora"] + subspace.up["lora"](train_point)
            # theta_init on test, first
            torch.testing.assert_close(model.functional_scores(inits["lora"], scripted.calls[0][2]),
                                       scripted.calls[0][1])
            # each kept point is the one scored at its scripted best dev, and the one its test scores
            # (calls: learned 1-5 dev, 6 test; svd 7-11, 12; random 13-17, 18; training points 19-20, 21)
            torch.testing.assert_close(model.functional_scores(learned_vector, dev_batch), scripted.calls[2][1])
            torch.testing.assert_close(model.functional_scores(learned_vector, scripted.calls[6][2]),
                                       scripted.calls[6][1])
            torch.testing.assert_close(model.functional_scores(svd_vector, dev_batch), scripted.calls[9][1])
            assert not torch.allclose(model.functional_scores(svd_vector, dev_batch), scripted.calls[11][1])
            torch.testing.assert_close(model.functional_scores(svd_vector, scripted.calls[12][2]),
                                       scripted.calls[12][1])
            torch.testing.assert_close(model.functional_scores(random_vector, dev_batch), scripted.calls[13][1])
            torch.testing.assert_close(model.functional_scores(random_vector, scripted.calls[18][2]),
                                       scripted.calls[18][1])
            torch.testing.assert_close(model.functional_scores(train_point_vector, dev_batch), scripted.calls[20][1])
            torch.testing.assert_close(model.functional_scores(train_point_vector, scripted.calls[21][2]),
                                       scripted.calls[21][1])
        chosen[variant] = (points["intrinsic"], points["svd_intrinsic"], points["random_intrinsic"], result)
    for k in range(3):
        assert torch.equal(chosen["plain"][k], chosen["flipped_test"][k])
    plain, flipped = chosen["plain"][3], chosen["flipped_test"][3]
    assert plain["best_train_point_from"] == flipped["best_train_point_from"]
    for key in ("test", "init_test", "svd_test", "random_test", "best_train_point_test"):
        assert plain[key] == pytest.approx(1 - flipped[key]), key  # test really differed, the choices did not


def test_best_train_point_picks_by_dev_and_tests_only_the_pick(tiny_stage1, tmp_path, monkeypatch):
    """Five training points, the best dev score on the third: that one is kept however the test labels read,
    and the test split is scored once, at it."""
    root, spec, _ = tiny_stage1
    model = build_delta_model(load_backbone(spec["backbone"]), TINY_DETS["lora"], spec["init_seed"])
    up = UpProjection(3, model.num_parameters)  # any up-projection: a fixed random one
    with torch.no_grad():
        up.weight.copy_(0.05 * torch.randn(model.num_parameters, 3, generator=torch.Generator().manual_seed(3)))
    coords = torch.randn(5, 3, generator=torch.Generator().manual_seed(4))
    points = pd.DataFrame([{"task": task, "seed": seed, "det": det, "relative_error": 0.1,
                            **{f"i{k}": float(coords[row, k]) for k in range(3)}, "source": "x"}
                           for row, (task, seed, det) in enumerate([("a", 1, "lora"), ("a", 1, "prompt"),
                                                                    ("b", 7, "prompt"), ("b", 2, "lora"),
                                                                    ("c", 1, "lora")])])
    dev_script = [0.4, 0.7, 0.9, 0.9, 0.2]  # the third wins; the tie on the fourth does not replace it
    chosen = {}
    for variant in ("plain", "flipped_test"):
        data = write_task(tmp_path / variant, n=(8, DEV_SIZE, TEST_SIZE))
        if variant == "flipped_test":
            _flip_test_labels(data)
        job = job_module.start_job(spec, None, dets={"lora": TINY_DETS["lora"]})
        splits, _ = job_module.load_task_splits(data, "t")
        batches = {name: job.batches(splits[name], "t", 8) for name in ("dev", "test")}
        scripted = ScriptedEvaluate(job_module.evaluate, dev_script, job_module.evaluate_examples)
        scripted.install(monkeypatch, job_module)
        found = optimize_stage.best_train_point(job, "lora", up, points, batches, "accuracy")
        assert scripted.kinds() == ["dev"] * 5 + ["test"]
        assert found["from"] == {"task": "b", "seed": 7, "det": "prompt"} and found["dev"] == 0.9
        with torch.no_grad():
            vector = model.vector() + up(coords[2])
            for row in range(5):  # each dev call scored its own row's point, in file order
                torch.testing.assert_close(model.functional_scores(model.vector() + up(coords[row]),
                                                                   scripted.calls[row][2]), scripted.calls[row][1])
            torch.testing.assert_close(model.functional_scores(vector, scripted.calls[5][2]), scripted.calls[5][1])
        # the test score: the pick's own predictions against the test labels, counted here
        predictions = found["predictions"]
        assert list(predictions["example"]) == list(range(TEST_SIZE))
        assert found["test"] == pytest.approx((predictions["pred"] == predictions["gold"]).mean())
        chosen[variant] = found
    assert chosen["plain"]["from"] == chosen["flipped_test"]["from"]
    assert chosen["plain"]["test"] == pytest.approx(1 - chosen["flipped_test"]["test"])


# ---- tables ---------------------------------------------------------------------------------------------------

# (task, det) -> stage-1 (dev, test, init_test); stage-3 (dev, test, random_dev, random_test, init_test, svd_test,
# best_train_point_test). Dev never equals test.
STAGE1 = {("t1", "lora"): (0.90, 0.80, 0.40), ("t1", "prefix"): (0.70, 0.60, 0.40),
          ("t2", "lora"): (0.85, 0.50, 0.30), ("t2", "prefix"): (0.35, 0.0, 0.10)}
STAGE3 = {("t1", "lora"): (0.95, 0.60, 0.55, 0.40, 0.40, 0.50, 0.45),
          ("t1", "prefix"): (0.65, 0.48, 0.52, 0.33, 0.40, 0.48, 0.30),
          ("t2", "lora"): (0.75, 0.45, 0.62, 0.25, 0.30, 0.40, 0.35),
          ("t2", "prefix"): (0.30, 0.20, 0.28, 0.10, 0.10, 0.15, 0.05)}
SEED = 7
N_TEST = 100  # every score above is a multiple of 1 / N_TEST


def _write_predictions(path, n: int, right: dict[str, int]):
    """A stage-3 predictions file of n binary examples (gold texts "yes", "no", "yes", ...) where column c is right
    on exactly its first right[c] examples and wrong on the rest."""
    gold = ["yes" if i % 2 == 0 else "no" for i in range(n)]
    other = {"yes": "no", "no": "yes"}
    columns = {"example": list(range(n)), "gold": gold, "references": [json.dumps([g]) for g in gold]}
    for name, k in right.items():
        columns[name] = [g if i < k else other[g] for i, g in enumerate(gold)]
    pd.DataFrame(columns).to_csv(path, index=False)


def _write_result(run, task, det, seed, scores: dict[str, float], n: int, primary: str = "accuracy", dev=0.5):
    """A stage-3 result.json and its predictions.csv, as optimize writes them; scores: test accuracy of each
    column of the predictions file (subspace, init, svd_subspace, random_subspace, best_train_point)."""
    run.mkdir(parents=True)
    _write_predictions(run / "predictions.csv", n, {c: round(v * n) for c, v in scores.items()})
    (run / "result.json").write_text(json.dumps({
        "task": task, "det": det, "seed": seed, "primary_metric": primary, "dev": dev, "test": scores["subspace"],
        "init_test": scores["init"], "svd_test": scores["svd_subspace"], "random_dev": dev - 0.1,
        "random_test": scores["random_subspace"], "best_train_point_test": scores["best_train_point"],
        "predictions": str(run / "predictions.csv"), "lr": 0.05}))
    return run


def _write_runs(root):
    stage1_runs, stage3_runs = [], []
    for (task, det), (dev, test, init_test) in STAGE1.items():
        run = root / "stage1" / task / det
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({
            "task": task, "det": det, "method": det, "seed": SEED, "params": 10, "primary_metric": "macro_f1",
            "dev": dev, "test": test, "test_metrics": {"accuracy": test / 2, "macro_f1": test}, "majority": 0.55,
            "init_dev": 0.31, "init_test": init_test, "gain": test - init_test, "best_step": 4, "steps": 6}))
        stage1_runs.append(run)
    for (task, det), (dev, test, random_dev, random_test, init_test, svd_test, point_test) in STAGE3.items():
        run = _write_result(root / "stage3" / task / det, task, det, SEED,
                            {"subspace": test, "init": init_test, "svd_subspace": svd_test,
                             "random_subspace": random_test, "best_train_point": point_test}, N_TEST, dev=dev)
        stage3_runs.append(run)
    original_table(stage1_runs, root / "original.csv")
    return stage1_runs, stage3_runs


def test_original_table_reports_test_not_dev(tmp_path):
    _write_runs(tmp_path)
    table = pd.read_csv(tmp_path / "original.csv").set_index(["task", "det"])
    assert table.loc[("t1", "lora"), "test"] == 0.80 and table.loc[("t1", "lora"), "dev"] == 0.90
    assert table.loc[("t1", "prefix"), "test_accuracy"] == 0.30 and table.loc[("t1", "prefix"), "init_dev"] == 0.31
    assert table.loc[("t1", "prefix"), "primary_metric"] == "macro_f1"
    assert table.loc[("t1", "lora"), "init_test"] == 0.40 and table.loc[("t1", "lora"), "gain"] == 0.40
    assert table.loc[("t2", "prefix"), "gain"] == -0.10


def test_relative_columns_are_test_scores_over_own_space_test_and_empty_where_own_space_is_zero(tmp_path):
    _, stage3_runs = _write_runs(tmp_path)
    relative_performance_table(stage3_runs, tmp_path / "original.csv", {"t1": "unseen", "t2": "unseen"},
                               tmp_path / "relative.csv", tmp_path / "relative.md")
    raw = pd.read_csv(tmp_path / "relative.csv", dtype=str, keep_default_na=False).set_index(["task", "det"])
    table = pd.read_csv(tmp_path / "relative.csv").set_index(["task", "det"])
    # By hand: 0.60 / 0.80, 0.40 / 0.80; 0.48 / 0.60, 0.33 / 0.60; 0.45 / 0.50, 0.25 / 0.50.
    # gain relative: (0.60 - 0.40) / (0.80 - 0.40); (0.48 - 0.40) / (0.60 - 0.40); (0.45 - 0.30) / (0.50 - 0.30).
    expected = {("t1", "lora"): (75.0, 50.0, 50.0), ("t1", "prefix"): (80.0, 55.0, 40.0),
                ("t2", "lora"): (90.0, 50.0, 75.0)}
    for key, (relative, random_relative, gain_relative) in expected.items():
        assert table.loc[key, "relative"] == pytest.approx(relative)
        assert table.loc[key, "random_relative"] == pytest.approx(random_relative)
        assert table.loc[key, "gain_relative"] == pytest.approx(gain_relative)
    assert table.loc[("t1", "lora"), "own_space"] == 0.80 and table.loc[("t1", "lora"), "subspace"] == 0.60
    assert table.loc[("t1", "lora"), "random_subspace"] == 0.40 and table.loc[("t1", "lora"), "majority"] == 0.55
    assert table.loc[("t1", "lora"), ["init", "svd_subspace", "best_train_point"]].tolist() == [0.40, 0.50, 0.45]
    # Each vs_ column: subspace minus that baseline on the same examples (the first-k construction: the difference
    # of the two scores), inside its own interval.
    for (task, det), (_, test, _, random_test, init_test, svd_test, point_test) in STAGE3.items():
        row = table.loc[(task, det)]
        for baseline, score in (("init", init_test), ("svd_subspace", svd_test), ("random_subspace", random_test),
                                ("best_train_point", point_test)):
            assert row[f"vs_{baseline}"] == pytest.approx(test - score, abs=1e-9), (task, det, baseline)
            assert row[f"vs_{baseline}_low"] <= row[f"vs_{baseline}"] <= row[f"vs_{baseline}_high"]
    # own space 0: no ratio (an empty cell, never inf); own space below init: no gain to recover
    assert raw.loc[("t2", "prefix"), "relative"] == "" and raw.loc[("t2", "prefix"), "random_relative"] == ""
    assert raw.loc[("t2", "prefix"), "gain_relative"] == ""
    assert "inf" not in (tmp_path / "relative.csv").read_text()
    # The per-DET means: lora (75 + 90) / 2, gain (50 + 75) / 2; prefix over its one defined ratio each.
    text = (tmp_path / "relative.md").read_text()
    header = [line.strip("| ").split(" | ") for line in text.splitlines() if line.startswith("| task_role")][0]
    assert header == ["task_role", "det", "own_space", "init", "subspace", "svd_subspace", "random_subspace",
                      "best_train_point", "relative", "gain_relative"]
    rows = {line.split(" | ")[1]: line.strip("| ").split(" | ") for line in text.splitlines() if line.startswith("| unseen")}
    # own space (0.80 + 0.50) / 2, init (0.40 + 0.30) / 2, subspace (0.60 + 0.45) / 2, svd (0.50 + 0.40) / 2,
    # random (0.40 + 0.25) / 2, best training point (0.45 + 0.35) / 2
    assert [float(v) for v in rows["lora"][2:]] == pytest.approx([0.65, 0.35, 0.525, 0.45, 0.325, 0.40, 82.5, 62.5])
    assert rows["prefix"][8:] == ["80.0", "40.0"]
    section, frame = relative_section(tmp_path / "relative.csv", tmp_path / "original.csv")
    rows = frame.set_index("det")
    assert rows.loc["lora", "relative (%)"] == "82.5" and rows.loc["lora", "gain relative (%)"] == "62.5"
    assert rows.loc["lora", "init"] == "0.350" and rows.loc["lora", "best_train_point"] == "0.400"
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
    # the TARGET DET's theta_init on t1 (stage 1): 0.40 for both; gain relative (0.42 - 0.40) / (0.60 - 0.40),
    # (0.64 - 0.40) / (0.80 - 0.40)
    gained = table.set_index(["source_det", "target_det"])
    assert gained["init"].tolist() == pytest.approx([0.40] * 4)
    assert gained.loc[("lora", "prefix"), "gain_relative"] == pytest.approx(10.0)
    assert gained.loc[("prefix", "lora"), "gain_relative"] == pytest.approx(60.0)
    assert "Mean over all pairs: 75.0" in (tmp_path / "transfer.md").read_text()
    section, _ = transfer_section(tmp_path / "transfer.csv", [csv])
    assert "Mean over the off-diagonal pairs: 75.0%" in section


# ---- hand-made relative table: baselines, intervals, pooling, significance words -------------------------------


def _hand_original(path, rows):
    """original.csv as stage 1's table writes it; rows: (task, det, seed, test, init_test)."""
    pd.DataFrame([{"task": task, "det": det, "method": det, "seed": seed, "params": 10, "primary_metric": "accuracy",
                   "dev": test, "test": test, "init_test": init, "gain": test - init, "test_accuracy": test,
                   "majority": 0.5, "init_dev": init, "best_step": 2, "steps": 4, "seconds": 1.0, "precision": "fp32",
                   "device": "cpu", "source": f"stage1/{task}/{det}/metrics.json"}
                  for task, det, seed, test, init in rows]).to_csv(path, index=False)


def test_hand_made_relative_table_columns_differences_and_pooled_intervals(tmp_path):
    # t1: 10 test examples, subspace right on 8, init 6, svd 7, random 5, best training point 4; own space 1.0.
    # t2: 10 test examples, subspace right on 6, init 5, svd 6, random 5, best training point 3; own space 0.9.
    runs = [_write_result(tmp_path / "s3" / "t1", "t1", "lora", 1,
                          {"subspace": 0.8, "init": 0.6, "svd_subspace": 0.7, "random_subspace": 0.5,
                           "best_train_point": 0.4}, 10),
            _write_result(tmp_path / "s3" / "t2", "t2", "lora", 1,
                          {"subspace": 0.6, "init": 0.5, "svd_subspace": 0.6, "random_subspace": 0.5,
                           "best_train_point": 0.3}, 10)]
    _hand_original(tmp_path / "original.csv", [("t1", "lora", 1, 1.0, 0.6), ("t2", "lora", 1, 0.9, 0.5)])
    table = relative_performance_table(runs, tmp_path / "original.csv", {"t1": "unseen", "t2": "unseen"},
                                       tmp_path / "relative.csv", tmp_path / "relative.md", tmp_path / "intervals.csv")
    written = pd.read_csv(tmp_path / "relative.csv")
    required = ["task", "task_role", "det", "seed", "own_space", "init", "subspace", "svd_subspace",
                "random_subspace", "best_train_point", "relative", "gain_relative"]
    assert list(written.columns[:len(required)]) == required
    assert {f"vs_{b}{end}" for b in ("init", "svd_subspace", "random_subspace", "best_train_point")
            for end in ("", "_low", "_high")} | {"majority", "lr", "best_step", "source", "predictions"} <= set(written.columns)
    rows = written.set_index("task")
    assert rows.loc["t1", "vs_random_subspace"] == 0.3  # 8/10 - 5/10, exactly (as written, 4 decimals)
    assert rows.loc["t1", "gain_relative"] == 50.0  # (0.8 - 0.6) / (1.0 - 0.6) x 100
    assert rows.loc["t2", "gain_relative"] == 25.0  # (0.6 - 0.5) / (0.9 - 0.5) x 100
    assert rows.loc["t1", "relative"] == 80.0 and rows.loc["t1", "random_relative"] == 50.0
    assert rows.loc["t1", "vs_init"] == 0.2 and rows.loc["t1", "vs_svd_subspace"] == 0.1
    assert rows.loc["t1", "vs_best_train_point"] == 0.4 and rows.loc["t2", "vs_svd_subspace"] == 0.0
    assert rows.loc["t1", "predictions"] == str(tmp_path / "s3" / "t1" / "predictions.csv")
    for baseline in ("init", "svd_subspace", "random_subspace", "best_train_point"):
        assert (table[f"vs_{baseline}_low"] <= table[f"vs_{baseline}"]).all()
        assert (table[f"vs_{baseline}"] <= table[f"vs_{baseline}_high"]).all()
    # identical predictions (t2: svd = subspace on every example): the interval is the point 0
    assert rows.loc["t2", ["vs_svd_subspace_low", "vs_svd_subspace_high"]].tolist() == [0.0, 0.0]

    intervals = pd.read_csv(tmp_path / "intervals.csv")
    assert list(intervals.columns) == ["task_role", "det", "baseline", "scope", "estimate", "low", "high", "n_strata",
                                       "n_examples", "sources"]
    random = intervals[intervals["baseline"] == "random_subspace"].set_index("scope")
    assert sorted(random.index) == ["pooled", "t1", "t2"]
    assert random.loc["t1", "estimate"] == 0.3 and random.loc["t2", "estimate"] == 0.1
    # pooled over the two tasks: the mean of the per-task differences, (0.3 + 0.1) / 2
    assert random.loc["pooled", "estimate"] == pytest.approx(0.2, abs=1e-9)
    assert random.loc["pooled", "estimate"] == pytest.approx(random.loc[["t1", "t2"], "estimate"].mean(), abs=1e-9)
    assert random.loc["pooled", ["n_strata", "n_examples"]].tolist() == [2, 20]
    assert random.loc["t1", ["n_strata", "n_examples"]].tolist() == [1, 10]
    for baseline, group in intervals.groupby("baseline"):
        per_task = group.set_index("scope")
        assert per_task.loc["pooled", "estimate"] == pytest.approx(per_task.loc[["t1", "t2"], "estimate"].mean(),
                                                                   abs=1e-4), baseline
        assert ((group["low"] <= group["estimate"]) & (group["estimate"] <= group["high"])).all(), baseline
    assert random.loc["pooled", "sources"] == f"{tmp_path}/s3/t{{1,2}}/predictions.csv"
    # one seed per task: a task's interval is its row's, drawn from the same resamples
    for task in ("t1", "t2"):
        assert random.loc[task, ["low", "high"]].tolist() == rows.loc[task, ["vs_random_subspace_low",
                                                                             "vs_random_subspace_high"]].tolist()


def test_summary_says_significant_only_where_the_interval_excludes_zero(tmp_path):
    """60 test examples: subspace right on all, random on 30 (a clear difference); svd and best training point
    identical to subspace on every example (no difference at all); init right on 59 (too small to tell)."""
    run = _write_result(tmp_path / "s3" / "t", "t", "lora", 1,
                        {"subspace": 1.0, "init": 59 / 60, "svd_subspace": 1.0, "random_subspace": 0.5,
                         "best_train_point": 1.0}, 60)
    _hand_original(tmp_path / "original.csv", [("t", "lora", 1, 1.0, 59 / 60)])
    relative_performance_table([run], tmp_path / "original.csv", {"t": "unseen"}, tmp_path / "relative.csv",
                               tmp_path / "relative.md", tmp_path / "intervals.csv")
    intervals = pd.read_csv(tmp_path / "intervals.csv").set_index(["baseline", "scope"])
    assert intervals.loc[("random_subspace", "pooled"), "low"] > 0  # 0.5 on 60 paired examples: excludes 0
    assert intervals.loc[("svd_subspace", "pooled"), ["estimate", "low", "high"]].tolist() == [0.0, 0.0, 0.0]
    assert intervals.loc[("init", "pooled"), "low"] <= 0 <= intervals.loc[("init", "pooled"), "high"]
    text, _ = intervals_section(tmp_path / "intervals.csv")
    (line,) = [line for line in text.splitlines() if line.startswith("- **lora**")]
    verdicts = {name: part for part in line.split(": ", 1)[1].split("; ")
                for name in ("theta_init", "the joint-SVD subspace", "a random subspace",
                             "the best training task's point") if f" vs {name} [" in part}
    assert "(1 task-seed test sets, 60 examples)" in line
    assert verdicts["a random subspace"].startswith("+0.500 vs a random subspace [")
    assert verdicts["a random subspace"].endswith("subspace > a random subspace (95% CI excludes 0)")
    for null in ("the joint-SVD subspace", "the best training task's point", "theta_init"):
        assert "no significant difference (95% CI includes 0)" in verdicts[null], null
        assert "excludes" not in verdicts[null], null
