"""The paper's presets: their task lists are the reference split and pairs, they plan the right jobs against a
CrossFit-format data folder given once (crossfit_dir), missing data stops them before any job, and a two-task
run of the multi-task preset (a tiny random T5 or Llama standing in for the hub model, a classification and a
generative task) goes through the tables."""
from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import PAPER_PRESETS, REPO, load_config, planned_jobs, snakemake
from deltaspace.tasks import TaskDataError, load_task, resolve_crossfit_path

PAPER_TASKS = REPO / "config" / "paper_tasks"
STAGE_RULES = ("prepare_task", "original", "collect_vectors", "original_table", "decompose", "optimize",
               "transfer", "result_tables")
PAPER_PARAMS = 1_105_920  # adapter, LoRA and prefix on T5 v1.1 base, each (the paper)


def task_lists(name: str) -> dict:
    return yaml.safe_load((PAPER_TASKS / name).read_text())


def stage3_tasks(config: dict) -> list[str]:
    sub = config["decompose"]
    return sub["unseen_tasks"] + (sub["train_tasks"] if sub["optimize_seen"] else [])


def expected_jobs(config: dict) -> dict[str, int]:
    """Stage 1 runs on every task; stage 3 and transfer on the unseen/target tasks (and the seen ones if asked)."""
    tasks, dets, seeds = len(config["tasks"]), len(config["dets"]), len(config["seeds"])
    optimized = len(stage3_tasks(config))
    return {"prepare_task": tasks, "original": tasks * dets * seeds, "collect_vectors": dets, "original_table": 1,
            "decompose": 1, "optimize": optimized * dets * seeds, "transfer": optimized * seeds,
            "result_tables": 1}


def stage_jobs(output: str) -> dict[str, int]:
    return {rule: count for rule, count in planned_jobs(output).items() if rule in STAGE_RULES}


# ---- the task lists ----------------------------------------------------------------------------------


def test_multi_task_preset_uses_the_reference_60_10_split():
    split = task_lists("multi_task.yaml")
    train, unseen = split["train"], split["unseen"]
    assert len(train) == len(set(train)) == 60 and len(unseen) == len(set(unseen)) == 10
    assert not set(train) & set(unseen)
    # The paper names its unseen tasks in the text; the split file must agree with it.
    assert sorted(unseen) == sorted(["ai2_arc", "blimp-anaphor_number_agreement", "eli5-asks", "ethos-gender",
                                     "glue-rte", "qasc", "quartz-no_knowledge", "rotten_tomatoes", "superglue-wsc",
                                     "yelp_polarity"])
    config = load_config("paper.yaml")
    assert config["decompose"]["train_tasks"] == train and config["decompose"]["unseen_tasks"] == unseen
    assert list(config["tasks"]) == train + unseen
    assert all(spec == {"source": "crossfit"} for spec in config["tasks"].values()), "read from crossfit_dir/<task>"


def test_single_task_preset_runs_one_of_the_paper_pairs():
    pairs = task_lists("single_task.yaml")["pairs"]
    assert len(pairs) == 6
    for source, targets in pairs.items():
        assert targets and source not in targets and len(set(targets)) == len(targets)
    config = load_config("paper_single_task.yaml")
    (source,) = config["decompose"]["train_tasks"]
    assert config["decompose"]["setting"] == "single"
    assert config["decompose"]["unseen_tasks"] == pairs[source]
    assert list(config["tasks"]) == [source, *pairs[source]]


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_paper_presets_keep_the_paper_model_and_dets(name):
    config = load_config(name)
    assert config["backbone"] == {"name_or_path": "google/t5-base-lm-adapt", "kind": "seq2seq", "scoring": "generate",
                                  "max_input_tokens": 512, "max_answer_tokens": 64, "input_template": "[{task}] {input}"}
    assert {det: spec["method"] for det, spec in config["dets"].items()} == {
        "adapter": "adapter", "lora": "lora", "prefix": "prefix"}
    assert {spec["expected_params"] for spec in config["dets"].values()} == {PAPER_PARAMS}
    setting = config["decompose"]["setting"]
    # method.md: r, lambda and batch differ between the settings; stage 3 dev interval too.
    expected = {"multi": (100, 10.0, 16, 100), "single": (4, 0.1, 8, 500)}[setting]
    sub = config["decompose"]
    assert (sub["intrinsic_dim"], sub["lambda"], sub["batch_size"], config["optimize"]["eval_every"]) == expected
    assert (sub["init"], sub["optimizer"], sub["lr"], sub["mixing"]) == ("random", "adafactor", 1e-4, "paper")
    assert config["optimize"]["lrs"] == [1e-2, 5e-2] and config["optimize"]["steps"] == 5000


# ---- where the data is read from ---------------------------------------------------------------------


def test_crossfit_paths_resolve_under_crossfit_dir(tmp_path):
    spec = {"source": "crossfit"}
    assert resolve_crossfit_path("glue-rte", spec, tmp_path)["path"] == str(tmp_path / "glue-rte")
    assert resolve_crossfit_path("rte", {**spec, "path": "glue-rte"}, tmp_path)["path"] == str(tmp_path / "glue-rte")
    assert resolve_crossfit_path("rte", {**spec, "path": "/data/rte"}, tmp_path)["path"] == "/data/rte"
    assert resolve_crossfit_path("rte", {**spec, "path": "data/rte"}, None)["path"] == "data/rte"
    with pytest.raises(TaskDataError, match="needs key 'path', or a top-level 'crossfit_dir'"):
        resolve_crossfit_path("rte", spec, None)


def test_load_task_reads_the_folder_named_after_the_task(paper_crossfit_dir):
    raw = load_task("glue-rte", {"source": "crossfit"}, crossfit_dir=paper_crossfit_dir)
    assert {split: len(examples) for split, examples in raw.given_splits.items()} == {"train": 16, "dev": 8, "test": 8}
    assert "glue-rte test 0" in raw.given_splits["test"][0].input


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_paper_dry_run_plans_every_job_from_the_data_folder(workdir, paper_crossfit_dir, name):
    config = load_config(name)
    result = snakemake(workdir, "-n", "-p", "--configfile", str(REPO / "config" / name),
                       "--config", f"crossfit_dir={paper_crossfit_dir}")
    assert result.returncode == 0, result.stdout[-3000:]
    assert stage_jobs(result.stdout) == expected_jobs(config)
    # Each prepare_task job is told where the data lies.
    assert result.stdout.count(f'"crossfit_dir": "{paper_crossfit_dir}"') == len(config["tasks"]), result.stdout[-3000:]


def test_missing_data_folder_stops_before_any_job_naming_it(workdir):
    missing = workdir / "no-such-folder"
    result = snakemake(workdir, "-n", "--configfile", str(REPO / "config" / "paper.yaml"),
                       "--config", f"crossfit_dir={missing}")
    assert result.returncode != 0
    assert (f"Invalid configuration: config key 'crossfit_dir': folder '{missing}' does not exist (in {workdir}), "
            "so 70 CrossFit task(s) have no data; give the data's folder with "
            "--config crossfit_dir=/path/to/crossfit/data") in result.stdout, result.stdout
    assert "Job stats" not in result.stdout


def test_missing_task_folder_or_split_file_is_named_with_its_task(workdir, paper_crossfit_dir):
    data = workdir / "crossfit"
    shutil.copytree(paper_crossfit_dir, data)
    (data / "glue-rte" / "glue-rte_dev.tsv").unlink()
    shutil.rmtree(data / "qasc")
    result = snakemake(workdir, "-n", "--configfile", str(REPO / "config" / "paper.yaml"),
                       "--config", f"crossfit_dir={data}")
    assert result.returncode != 0
    assert (f"CrossFit data missing for 2 task(s) under crossfit_dir '{data}': not found task 'glue-rte': "
            f"{data / 'glue-rte' / 'glue-rte_dev.tsv'}; task 'qasc': {data / 'qasc'}.") in result.stdout, result.stdout


# ---- a real run, paper-shaped ------------------------------------------------------------------------


def two_task_paper_config(model_dir: Path, train_task: str, unseen_task: str) -> dict:
    """config/paper.yaml on two of its tasks with a tiny local model, tiny DETs and a few steps; every other
    setting (generate scoring, the metric table, the "[task] input" template, Adafactor, the mixing, the lr grid)
    stays the paper's."""
    config = load_config("paper.yaml")
    assert train_task in config["decompose"]["train_tasks"] and unseen_task in config["decompose"]["unseen_tasks"]
    config["backbone"].update(name_or_path=str(model_dir), kind="auto", max_answer_tokens=4)
    config["tasks"] = {task: config["tasks"][task] for task in (train_task, unseen_task)}
    # The paper's sizes (and their expected_params) fit T5 v1.1 base, not a 32-wide random model.
    config["dets"] = {"adapter": {"method": "adapter", "bottleneck": 2},
                      "lora": {"method": "lora", "rank": 2, "alpha": 16},
                      "prefix": {"method": "prefix", "length": 2, "hidden": 4}}
    config["original"].update(steps=4, eval_every=2, batch_size=4, eval_batch_size=16)
    config["decompose"].update(train_tasks=[train_task], unseen_tasks=[unseen_task], intrinsic_dim=4, steps=2,
                              eval_every=2, batch_size=4, eval_batch_size=16, dev_examples=4)
    config["optimize"].update(steps=2, eval_every=2, eval_batch_size=16)
    config["resources"] = {"default": {"threads": 1, "mem_mb": 1000, "runtime": 10, "gpu": 0}}
    config["device"] = "cpu"
    return config


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def lcs_rouge_l(prediction: str, reference: str) -> float:
    """Rouge-L F1 by hand: the longest common subsequence of lower-cased alphanumeric tokens (rouge-score's
    tokenizer without stemming), 0 for an empty prediction."""
    a, b = (re.sub(r"[^a-z0-9]+", " ", text.lower()).split() for text in (prediction, reference))
    if not a or not b:
        return 0.0
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    lcs = table[-1][-1]
    return 0.0 if lcs == 0 else 2 * lcs / (len(a) + len(b))


def run_through_tables(workdir: Path, config: dict, crossfit_dir: Path) -> Path:
    """The config (written beside the run) through the result tables only: the figures, landscape and exports
    are the same code for any preset. Returns the run's results folder."""
    derived = workdir / "two_tasks.yaml"
    derived.write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--cores", "2", "--until", "result_tables", "--configfile", str(derived),
                       "--config", f"crossfit_dir={crossfit_dir}", timeout=900)
    assert result.returncode == 0, result.stdout[-5000:]
    return workdir / "results"


def read_predictions(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def mean_rouge_l(predictions: pd.DataFrame, column: str) -> float:
    """Rouge-L of a column's texts, the best over each example's references, averaged over the examples."""
    references = [json.loads(refs) for refs in predictions["references"]]
    best = [max(lcs_rouge_l(text, reference) for reference in refs)
            for text, refs in zip(predictions[column], references)]
    return sum(best) / len(best)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_two_task_paper_shaped_run_reaches_the_tables(workdir, tiny_model_dirs, paper_crossfit_dir, kind):
    """A classification task (glue-sst2, ACC) trains the subspace and a generative one (eli5-asks, Rouge-L: free
    text in the fixture) is optimized in it, both generated by a tiny T5 and a tiny Llama (prefix tuning decodes
    too); the tables' scores are the hand-computed metrics of the predictions the jobs wrote."""
    train_task, unseen_task = "glue-sst2", "eli5-asks"
    config = two_task_paper_config(tiny_model_dirs[kind], train_task, unseen_task)
    results = run_through_tables(workdir, config, paper_crossfit_dir)
    summary = json.loads((results / "data" / unseen_task / "task.json").read_text())
    assert summary["sizes"] == {"train": 24, "dev": 8, "test": 8}, "CrossFit's own splits, kept whole"
    assert (summary["kind"], summary["primary_metric"]) == ("generative", "rouge_l")
    train_summary = json.loads((results / "data" / train_task / "task.json").read_text())
    assert (train_summary["kind"], train_summary["primary_metric"]) == ("classification", "accuracy")
    stage1 = read_csv(results / "tables" / "original.csv")
    assert sorted((row["task"], row["det"]) for row in stage1) == sorted(
        (task, det) for task in (train_task, unseen_task) for det in config["dets"])
    metrics = json.loads((results / "original" / unseen_task / "lora" / "seed42" / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["params"] > 0

    # Stage 1 of the classification task: ACC is the share of generated texts equal to the gold one (any case).
    for row in (r for r in stage1 if r["task"] == train_task):
        predictions = read_predictions(results / "original" / train_task / row["det"] / "seed42" / "predictions.csv")
        hand = sum(p.lower() == g.lower() for p, g in zip(predictions["own"], predictions["gold"])) / len(predictions)
        assert float(row["test"]) == pytest.approx(hand, abs=1e-4)

    relative = read_csv(results / "tables" / "relative_performance.csv")
    assert sorted((row["task"], row["task_role"], row["det"]) for row in relative) == sorted(
        (unseen_task, "unseen", det) for det in config["dets"])
    for row in relative:
        # Stage 3 of the generative task: Rouge-L, the best over each example's two references, averaged.
        predictions = read_predictions(results / "optimize" / unseen_task / row["det"] / "seed42" / "predictions.csv")
        assert all(len(json.loads(refs)) == 2 for refs in predictions["references"])
        for column in ("subspace", "init"):
            hand = mean_rouge_l(predictions, column)
            assert float(row[column]) == pytest.approx(hand, abs=1e-4), (row["det"], column)
        own, subspace = float(row["own_space"]), float(row["subspace"])
        if own:  # relative performance is undefined where the own-space score is zero
            assert float(row["relative"]) == pytest.approx(100 * subspace / own, abs=0.01)
        else:
            assert row["relative"] == ""
    transfer = read_csv(results / "tables" / "transfer.csv")
    assert sorted((row["source_det"], row["target_det"]) for row in transfer) == sorted(
        (s, t) for s in config["dets"] for t in config["dets"])


@pytest.mark.slow
def test_a_causal_run_ranks_its_classification_task_and_generates_its_free_text_one(workdir, tiny_model_dirs,
                                                                                   paper_crossfit_dir):
    """Scoring per task in one run and one subspace (config/causal.yaml's shape): with backbone.scoring rank, the
    tiny Llama ranks glue-sst2's two labels (every prediction is one of them) and generates eli5-asks (free
    text: it can only generate), through stages 1-3 with stage 3 on the seen task too; the tables' scores are
    the hand-computed accuracy and Rouge-L of the predictions the jobs wrote."""
    train_task, unseen_task = "glue-sst2", "eli5-asks"
    config = two_task_paper_config(tiny_model_dirs["causal"], train_task, unseen_task)
    config["backbone"]["scoring"] = "rank"
    config["decompose"]["optimize_seen"] = True
    results = run_through_tables(workdir, config, paper_crossfit_dir)
    candidates = json.loads((results / "data" / train_task / "task.json").read_text())["candidates"]
    assert len(candidates) == 2

    stage1 = read_csv(results / "tables" / "original.csv")
    for row in (r for r in stage1 if r["task"] == train_task):
        predictions = read_predictions(results / "original" / train_task / row["det"] / "seed42" / "predictions.csv")
        assert set(predictions["own"]) <= set(candidates)  # ranked: a label, never free text
        hand = sum(p == g for p, g in zip(predictions["own"], predictions["gold"])) / len(predictions)
        assert float(row["test"]) == pytest.approx(hand, abs=1e-4)
    relative = read_csv(results / "tables" / "relative_performance.csv")
    assert sorted((row["task"], row["task_role"]) for row in relative) == sorted(
        [(train_task, "seen")] * 3 + [(unseen_task, "unseen")] * 3)
    for row in relative:
        predictions = read_predictions(results / "optimize" / row["task"] / row["det"] / "seed42" / "predictions.csv")
        for column in ("subspace", "init", "random_subspace"):
            if row["task"] == train_task:
                assert set(predictions[column]) <= set(candidates)
                hand = sum(p == g for p, g in zip(predictions[column], predictions["gold"])) / len(predictions)
            else:
                hand = mean_rouge_l(predictions, column)
            assert float(row[column]) == pytest.approx(hand, abs=1e-4), (row["task"], row["det"], column)
