"""The landscape: the plane through the DETs' points, the grid's decoded mixtures, the region's area, the fast
(stacked) grid evaluation against the one-at-a-time reference, and the `landscape` command on tiny inputs."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from test_dets import TINY_SPECS
from test_original import write_task
from tiny_models import TINY_KINDS

from deltaspace.backbones import TaskFormat, load_backbone
from deltaspace.cli import main
from deltaspace.dets import build_delta_model
from deltaspace.evaluate import evaluate, prepare_batches
from deltaspace.grid_eval import (SCORE_TOLERANCE, metric_tolerance, point_metrics, reference_scores,
                                  stacked_scores, tokenise, tokenise_by_length, tokens_per_point)
from deltaspace.io import load_tensors, save_tensors, tensor_digest
from deltaspace.landscape import (AREA_COLUMNS, Plane, grid_coordinates, plane_through, region_area,
                                  region_map)
from deltaspace.subspace import save_subspace
from deltaspace.subspace import Subspace
from deltaspace.tasks import Example, read_split

CPU = torch.device("cpu")


# ---- the plane and the grid ----------------------------------------------------------------------------


def test_three_dets_grid_corners_decode_to_the_expected_mixtures():
    torch.manual_seed(0)
    points = torch.randn(3, 4)
    margin = 0.25
    plane = plane_through(points, margin)
    assert plane.rule == "triangle"
    u, v = grid_coordinates(plane, 5)
    grid = plane.at(u, v)
    up = Subspace({"a": 30}, 4).up["a"]
    init = torch.randn(30)
    corners = {0: (-margin, -margin), 4: (1 + margin, -margin), 20: (-margin, 1 + margin), 24: (1 + margin, 1 + margin)}
    for index, (cu, cv) in corners.items():
        assert (u[index].item(), v[index].item()) == pytest.approx((cu, cv))
        weights = torch.tensor([1 - cu - cv, cu, cv], dtype=torch.float64)  # affine: may be negative past the edges
        torch.testing.assert_close(grid[index], weights @ points.double())
        with torch.no_grad():  # decoded: the same mixture of the three DETs' decoded vectors
            decoded = init + up(grid[index].float())
            mixture = init + sum(w * up(p) for w, p in zip(weights.float(), points))
        torch.testing.assert_close(decoded, mixture, rtol=1e-5, atol=1e-5)
    uv, distance = plane.coordinates(points.double())
    torch.testing.assert_close(uv, torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    assert distance.max() < 1e-9


def test_more_dets_get_the_best_fit_plane_with_their_bounding_box_as_unit_square():
    torch.manual_seed(1)
    basis = torch.linalg.qr(torch.randn(5, 2)).Q.T  # a known 2-D plane in R^5
    points = torch.randn(6, 2) @ basis + torch.randn(5)  # six DETs on it
    plane = plane_through(points, 0.1)
    assert plane.rule == "best_fit"
    uv, distance = plane.coordinates(points.double())
    assert distance.max() < 1e-6  # the best-fit plane is the points' own plane
    assert uv.min(0).values.tolist() == pytest.approx([0.0, 0.0], abs=1e-9)
    assert uv.max(0).values.tolist() == pytest.approx([1.0, 1.0], abs=1e-9)
    assert plane.u_range == plane.v_range == (-0.1, 1.1)


def test_two_dets_get_their_line_and_an_orthogonal_direction_of_its_length():
    points = torch.tensor([[1.0, 2.0, 0.0], [3.0, 2.0, 1.0]])
    plane = plane_through(points, 0.25)
    assert plane.axis_u @ plane.axis_v == pytest.approx(0.0, abs=1e-12)
    assert plane.axis_v.norm().item() == pytest.approx(plane.axis_u.norm().item())
    uv, distance = plane.coordinates(points.double())
    assert sorted(uv[:, 0].tolist()) == pytest.approx([0.0, 1.0]) and uv[:, 1].tolist() == pytest.approx([0.5, 0.5])
    assert distance.max() < 1e-9
    collinear = torch.stack([points[0], (points[0] + points[1]) / 2, points[1]])
    assert plane_through(collinear, 0.25).rule == "best_fit"  # a flat triangle has no plane of its own


def test_planes_that_cannot_exist_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="intrinsic_dim >= 2"):
        plane_through(torch.tensor([[0.0], [1.0], [2.0]]), 0.25)
    with pytest.raises(ValueError, match="coincide"):
        plane_through(torch.ones(3, 4), 0.25)


def test_coinciding_points_get_the_plane_of_the_first_two_axes_centred_on_them():
    """Every DET kept stage 3's shared start: a 2 x 2 square (extent 2) along axes 0 and 1, centred on the point."""
    point = torch.tensor([0.5, -1.0, 3.0, 0.25])
    plane = plane_through(point.repeat(3, 1), 0.25, extent=2.0)
    assert plane.rule == "axes"
    corners = plane.at(torch.tensor([0.0, 1.0, 0.5]), torch.tensor([0.0, 1.0, 0.5])).float()
    expected = torch.tensor([[-0.5, -2.0, 3.0, 0.25], [1.5, 0.0, 3.0, 0.25], [0.5, -1.0, 3.0, 0.25]])
    torch.testing.assert_close(corners, expected)


def test_region_and_its_area_on_a_known_map():
    plane = Plane(torch.zeros(2, dtype=torch.float64), torch.tensor([2.0, 0.0], dtype=torch.float64),
                  torch.tensor([0.0, 3.0], dtype=torch.float64), (0.0, 1.5), (0.0, 1.5), "triangle")
    assert plane.unit_area == pytest.approx(6.0) and plane.grid_area == pytest.approx(6.0 * 1.5 * 1.5)
    u, v = grid_coordinates(plane, 7)
    rows = []
    for det, own in (("a", 1.0), ("b", 0.5)):
        # a reaches 90% of its own score where u <= 0.75; b where v <= 0.5: the region is their intersection.
        score = torch.where(u <= 0.75, 0.95, 0.5) * own if det == "a" else torch.where(v <= 0.5, 0.46, 0.1)
        rows.append(pd.DataFrame({"det": det, "row": torch.arange(49) // 7, "col": torch.arange(49) % 7, "u": u,
                                  "v": v, "score": score, "own_space": own}))
    inside = region_map(pd.concat(rows), 0.9)
    expected = ((u <= 0.75) & (v <= 0.5)).numpy()  # u, v in steps of 0.25: 4 columns x 3 rows
    assert inside.sort_values(["row", "col"])["inside"].tolist() == expected.tolist()
    area = region_area(inside, plane)
    assert area["points_inside"] == 12 and area["grid_points"] == 49
    assert area["area_fraction"] == pytest.approx(12 / 49)
    assert area["area"] == pytest.approx(12 / 49 * 13.5)


# ---- fast grid evaluation against the reference ------------------------------------------------------


WORDS = "this movie was great and the acting was excellent terrible plot awful a waste of time".split()
VARIED = [Example(" ".join(WORDS[(i * 3) % 7: (i * 3) % 7 + 2 + (i * 5) % 9]), ("negative", "positive", "spam")[: 2 + i % 2],
                  i % 2) for i in range(11)]  # 11 examples of 2 to 10 words, 2 or 3 candidates: two sorted batches


# Every DET on the encoder (the default's kind); on every kind, the two ways a vector reaches the forward pass
# when stacked: batched weights (LoRA) and per-point keys/values inside attention (prefix).
AGREEMENT_CASES = sorted({("encoder", det) for det in TINY_SPECS} | {(k, d) for k in TINY_KINDS for d in ("lora", "prefix")})


@pytest.mark.parametrize("kind, det", AGREEMENT_CASES)
def test_stacked_grid_scores_agree_with_the_reference(tiny_model_dirs, kind, det):
    model = build_delta_model(load_backbone({"name_or_path": str(tiny_model_dirs[kind])}), TINY_SPECS[det], 3)
    generator = torch.Generator().manual_seed(0)
    vectors = model.vector() + 0.3 * torch.randn(5, model.num_parameters, generator=generator)
    reference = reference_scores(model, vectors, 5, tokenise(model.backbone, VARIED, "t", CPU, 64))
    # Three points per pass: chunks of 3 and 2, over the length-sorted batches.
    devset = tokenise_by_length(model.backbone, VARIED, "t", CPU)
    assert len(devset.batches) >= 2 and sorted(devset.order.tolist()) == list(range(11))
    fast = stacked_scores(model, vectors, 5, devset, "fp32", CPU, max_points_per_pass=3)
    assert torch.equal(torch.isinf(fast), torch.isinf(reference))  # the same candidates masked, in example order
    finite = torch.isfinite(reference)
    torch.testing.assert_close(fast[finite], reference[finite], rtol=0, atol=SCORE_TOLERANCE["fp32"])
    # The per-point scores really differ (the vectors are used), and each grid score is within the tolerance.
    assert not torch.allclose(reference[0][finite[0]], reference[1][finite[1]])
    labels = devset.labels
    for got, want, allowed in zip(point_metrics(fast, labels), point_metrics(reference, labels),
                                  metric_tolerance(reference, "fp32")):
        assert abs(got["accuracy"] - want["accuracy"]) <= allowed / len(VARIED)


def test_stacked_bf16_scores_stay_within_the_bf16_tolerance(tiny_model_dirs):
    model = build_delta_model(load_backbone({"name_or_path": str(tiny_model_dirs["encoder"])}), TINY_SPECS["lora"], 3)
    vectors = model.vector() + 0.3 * torch.randn(4, model.num_parameters, generator=torch.Generator().manual_seed(0))
    reference = reference_scores(model, vectors, 4, tokenise(model.backbone, VARIED, "t", CPU, 64))
    fast = stacked_scores(model, vectors, 4, tokenise_by_length(model.backbone, VARIED, "t", CPU),
                          "bf16", CPU)
    finite = torch.isfinite(reference)
    assert (fast[finite] - reference[finite]).abs().max() <= SCORE_TOLERANCE["bf16"]


def test_length_batches_cover_every_example_once_and_pad_less_than_file_order(tiny_model_dirs):
    backbone = load_backbone({"name_or_path": str(tiny_model_dirs["encoder"])})
    by_length = tokenise_by_length(backbone, VARIED, "t", CPU)
    in_order = tokenise(backbone, VARIED, "t", CPU, 64)
    assert sorted(by_length.order.tolist()) == list(range(len(VARIED)))
    lengths = [int(b.tensors["attention_mask"].sum(1).max()) for b in by_length.batches]
    assert lengths == sorted(lengths)  # shortest first
    assert sum(map(tokens_per_point, by_length.batches)) < sum(map(tokens_per_point, in_order.batches))
    with pytest.raises(ValueError, match="no dev examples"):
        tokenise_by_length(backbone, [], "t", CPU)


def test_evaluation_batches_sort_by_length_and_score_like_file_order(tiny_model_dirs):
    """Every single-vector evaluation (stages 1-3, transfer) batches by length: less padding, the same metrics."""
    model = build_delta_model(load_backbone({"name_or_path": str(tiny_model_dirs["encoder"])}), TINY_SPECS["lora"], 3)
    sorted_batches = prepare_batches(model.backbone, VARIED, 4, "t", CPU)
    file_order = [model.backbone.prepare(VARIED[k: k + 4], "t") for k in range(0, len(VARIED), 4)]
    assert [len(b.labels) for b in sorted_batches] == [4, 4, 3]
    lengths = [int(b.tensors["attention_mask"].sum(1).max()) for b in sorted_batches]
    assert lengths == sorted(lengths)
    assert sum(map(tokens_per_point, sorted_batches)) < sum(map(tokens_per_point, file_order))
    assert sorted(sum((b.labels.tolist() for b in sorted_batches), [])) == sorted(e.label for e in VARIED)
    for scale in (0.0, 0.5, 2.0):  # several vectors, so the predictions vary
        vector = model.vector() + scale * torch.randn(model.num_parameters, generator=torch.Generator().manual_seed(1))
        score = lambda batch: model.functional_scores(vector, batch)  # noqa: E731
        assert evaluate(score, sorted_batches) == pytest.approx(evaluate(score, file_order), abs=1e-12)


def test_vectors_are_decoded_lazily_in_chunks(tiny_model_dirs):
    """The grid decodes init + Up(points) chunk by chunk (fine-tuning's vectors are the backbone's size)."""
    model = build_delta_model(load_backbone({"name_or_path": str(tiny_model_dirs["encoder"])}), TINY_SPECS["prompt"], 3)
    vectors = model.vector() + 0.3 * torch.randn(7, model.num_parameters, generator=torch.Generator().manual_seed(0))
    asked = []

    def rows(start, stop):
        asked.append((start, stop))
        return vectors[start:stop]

    devset = tokenise_by_length(model.backbone, VARIED, "t", CPU)
    lazy = stacked_scores(model, rows, 7, devset, "fp32", CPU, max_points_per_pass=3)
    assert set(asked) == {(0, 3), (3, 6), (6, 7)}
    torch.testing.assert_close(lazy, stacked_scores(model, vectors, 7, devset, "fp32", CPU))


# ---- the command on small synthetic inputs -------------------------------------------------------------


LANDSCAPE_DETS = {"lora": TINY_SPECS["lora"], "prompt": TINY_SPECS["prompt"], "bitfit": TINY_SPECS["bitfit"]}
SETTINGS = {"resolution": 5, "margin": 0.25, "fraction": 0.9, "dev_examples": 6, "batch_points": "auto"}


def build_landscape_inputs(root, backbone: dict):
    """A hand-built subspace (r = 3) for three DETs on a tiny backbone; stage-1 runs of tasks a (seen: its points
    are in points.csv) and b (unseen: its points are stage-3 vectors)."""
    spec = {"backbone": backbone, "dets": LANDSCAPE_DETS, "init_seed": 42,
            "precision": "fp32", "device": "cpu", "landscape": SETTINGS}
    models = {d: build_delta_model(load_backbone(spec["backbone"]), s, 42) for d, s in LANDSCAPE_DETS.items()}
    inits = {d: m.vector() for d, m in models.items()}
    torch.manual_seed(0)
    subspace = Subspace({d: m.num_parameters for d, m in models.items()}, 3, init_std=0.3)
    save_subspace(root / "subspace.safetensors", subspace, models, inits, spec, ["a"])
    data, points = {}, []
    for task in ("a", "b"):
        data[task] = write_task(root / "data" / task)
        for k, det in enumerate(LANDSCAPE_DETS):
            run = root / "stage1" / task / det
            delta = 0.2 * torch.randn(models[det].num_parameters)
            save_tensors(run / "delta.safetensors", {"delta": delta}, {"init_digest": tensor_digest(inits[det])})
            (run / "metrics.json").write_text(json.dumps({"dev": 0.75, "primary_metric": "accuracy"}))
            point = torch.randn(3)
            if task == "a":
                points.append({"task": "a", "seed": 42, "det": det, "relative_error": 0.1,
                               **{f"i{j}": float(x) for j, x in enumerate(point)}, "source": "hand-made"})
            else:
                save_tensors(root / "stage3" / det / "intrinsic.safetensors", {"intrinsic": point}, {})
    pd.DataFrame(points).to_csv(root / "points.csv", index=False)
    (root / "spec.json").write_text(json.dumps(spec))
    return root, spec, models, inits, subspace


@pytest.fixture(scope="module")
def landscape_inputs(tiny_model_dirs, tmp_path_factory):
    return build_landscape_inputs(tmp_path_factory.mktemp("landscape"), {"name_or_path": str(tiny_model_dirs["encoder"])})


def run_landscape(root, task, with_stage3: bool):
    args = ["landscape", "--task", task, "--seed", "42", "--spec", f"@{root / 'spec.json'}",
            "--subspace-path", str(root / "subspace.safetensors"), "--points-csv", str(root / "points.csv"),
            "--original", *[f"{d}={root / 'stage1' / task / d}" for d in LANDSCAPE_DETS],
            "--data", str(root / "data" / task), "--out", str(root / "out" / task), "--threads", "1"]
    if with_stage3:
        args += ["--optimize", *[f"{d}={root / 'stage3' / d}" for d in LANDSCAPE_DETS]]
    return main(args)


def test_landscape_command_writes_the_grid_maps_and_area(landscape_inputs):
    root, spec, models, inits, subspace = landscape_inputs
    assert run_landscape(root, "b", with_stage3=True) == 0
    out = root / "out" / "b"
    grid = pd.read_csv(out / "grid.csv")
    assert len(grid) == len(LANDSCAPE_DETS) * 25 and set(grid["det"]) == set(LANDSCAPE_DETS)
    assert grid["u"].min() == pytest.approx(-0.25) and grid["v"].max() == pytest.approx(1.25)
    for name in ["region", *(f"heatmap_{d}" for d in LANDSCAPE_DETS)]:
        assert (out / f"{name}.png").stat().st_size > 0 and (out / f"{name}.pdf").stat().st_size > 0
    info = json.loads((out / "landscape.json").read_text())
    assert info["plane"]["rule"] == "triangle" and info["points_source"] == "stage 3"

    # One grid score, recomputed by hand: init + Up(point) of the row's coordinates, scored on the same examples.
    dev = read_split(root / "data" / "b" / "dev.jsonl")[: SETTINGS["dev_examples"]]
    row = grid[(grid["det"] == "lora") & (grid["row"] == 1) & (grid["col"] == 3)].iloc[0]
    point = torch.tensor([row[f"i{k}"] for k in range(3)], dtype=torch.float32)
    model = models["lora"]
    batches = prepare_batches(model.backbone, dev, 64, "b", CPU)
    with torch.no_grad():
        vector = inits["lora"] + subspace.decode("lora", point)
        assert row["score"] == pytest.approx(evaluate(lambda b: model.functional_scores(vector, b), batches)["accuracy"])
    # Its own-space score: the stage-1 solution on the same examples (stage 1's full-dev score kept beside it).
    solution = inits["lora"] + load_tensors(root / "stage1" / "b" / "lora" / "delta.safetensors")[0]["delta"]
    with torch.no_grad():
        own = evaluate(lambda b: model.functional_scores(solution, b), batches)["accuracy"]
    assert row["own_space"] == pytest.approx(own) and row["own_space_full_dev"] == 0.75

    area = pd.read_csv(out / "area.csv")
    assert list(area.columns) == AREA_COLUMNS and len(area) == 1
    reaches = grid.assign(ok=grid["score"] >= 0.9 * grid["own_space"]).groupby(["row", "col"])["ok"].all()
    assert area["points_inside"].item() == reaches.sum() and area["area_fraction"].item() == pytest.approx(reaches.mean())


def test_landscape_of_a_seen_task_uses_its_points_and_the_table_joins_runs(landscape_inputs):
    root, *_ = landscape_inputs
    assert run_landscape(root, "a", with_stage3=False) == 0
    info = json.loads((root / "out" / "a" / "landscape.json").read_text())
    points = pd.read_csv(root / "points.csv").set_index("det")
    assert info["points_source"] == str(root / "points.csv") and info["stage3"] == {}
    assert info["points"]["prompt"] == pytest.approx(points.loc["prompt", ["i0", "i1", "i2"]].tolist())
    if not (root / "out" / "b" / "area.csv").exists():
        assert run_landscape(root, "b", with_stage3=True) == 0
    assert main(["landscape_table", "--areas", str(root / "out" / "b"), str(root / "out" / "a"),
                 "--out", str(root / "landscape_area.csv")]) == 0
    table = pd.read_csv(root / "landscape_area.csv")
    assert table["task"].tolist() == ["a", "b"] and (table["area_fraction"].between(0, 1)).all()


def test_an_unseen_task_without_stage3_vectors_is_refused_with_the_fix(landscape_inputs, capsys):
    root, *_ = landscape_inputs
    assert run_landscape(root, "b", with_stage3=False) == 1
    assert "decompose.unseen_tasks" in capsys.readouterr().err


def test_generate_mode_scores_each_grid_point_by_its_greedy_texts(tiny_model_dirs, tmp_path):
    """The paper's format on a tiny causal LM: a grid point's score is the exact-match accuracy of the texts it
    greedily decodes. The dev labels are rewritten so that one point's own texts are gold for the first half of
    the examples only: that point must score exactly 0.5 (the grid does not depend on the labels)."""
    backbone = {"name_or_path": str(tiny_model_dirs["causal"]), "scoring": "generate", "max_answer_tokens": 3}
    root, spec, models, inits, subspace = build_landscape_inputs(tmp_path, backbone)
    assert run_landscape(root, "b", with_stage3=True) == 0
    grid = pd.read_csv(root / "out" / "b" / "grid.csv")
    assert len(grid) == len(LANDSCAPE_DETS) * 25 and grid["score"].between(0, 1).all()
    dev_file = root / "data" / "b" / "dev.jsonl"
    dev = read_split(dev_file)[: SETTINGS["dev_examples"]]
    backbone = models["prompt"].backbone  # decoding stops at the task's cap, from its training split
    form = TaskFormat("b", "generate", answer_tokens=backbone.answer_cap(read_split(root / "data" / "b" / "train.jsonl")))
    batch = backbone.prepare(dev, form)

    def texts_at(row):
        point = torch.tensor([row[f"i{k}"] for k in range(3)], dtype=torch.float32)
        with torch.no_grad():
            return models["prompt"].functional_generate(inits["prompt"] + subspace.decode("prompt", point), batch)

    # a grid point whose every text is non-empty (each becomes a candidate below)
    row, texts = next((row, texts) for _, row in grid[grid["det"] == "prompt"].iterrows()
                      if all(texts := texts_at(row)))
    half = len(dev) // 2
    dev_file.write_text("".join(json.dumps({"input": e.input, "candidates": [text, "@@never@@"], "label": int(i >= half)}) + "\n"
                                for i, (e, text) in enumerate(zip(dev, texts))))
    assert run_landscape(root, "b", with_stage3=True) == 0
    rescored = pd.read_csv(root / "out" / "b" / "grid.csv").set_index(["det", "row", "col"])
    assert rescored.loc[("prompt", int(row["row"]), int(row["col"])), "score"] == pytest.approx(half / len(dev))
