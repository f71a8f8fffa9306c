"""deltaspace.tasks.metrics and the metric table: every expected value is worked out by hand here (or comes from
the library the reference code called), never from the module's own formula."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import yaml
from conftest import PAPER_PRESETS, REPO, load_config, snakemake
from sklearn.metrics import f1_score, matthews_corrcoef

from deltaspace.metric_table import MetricTableError, read_metric_table, with_table_metric
from deltaspace.tasks import (METRICS, CorpusMetric, MeanMetric, Scores, majority_baseline, majority_label,
                              prepare_task_job, reported_metrics, score_texts)

TABLE = REPO / "config" / "paper_tasks" / "metrics.csv"
REFERENCE_NAMES = {name: metric.reference_name for name, metric in METRICS.items()}


def score(name, predictions, references):
    return METRICS[name](predictions, references)


# ---- the seven metrics on hand-checked cases ------------------------------------------------------------------


def test_registry_names_ours_and_the_references():
    assert REFERENCE_NAMES == {"accuracy": "ACC", "exact_match": "EM", "qa_f1": "QA-F1", "rouge_l": "Rouge-L",
                               "macro_f1": "Classification-F1", "matthews_corr": "Matthew-Correlation",
                               "pearson": "Pearson-Correlation"}
    assert {n for n, m in METRICS.items() if isinstance(m, MeanMetric)} == {"accuracy", "exact_match", "qa_f1",
                                                                            "rouge_l"}
    assert {n for n, m in METRICS.items() if isinstance(m, CorpusMetric)} == {"macro_f1", "matthews_corr", "pearson"}


def test_accuracy_ignores_case_only_and_takes_the_best_reference():
    predictions = ["Yes", "no", "no.", "maybe"]
    references = [("yes",), ("yes", "NO"), ("no",), ("no", "yes")]
    # right: "Yes"~"yes", "no"~"NO" (second reference); wrong: "no." (punctuation counts), "maybe"
    assert score("accuracy", predictions, references) == pytest.approx(2 / 4)
    assert list(METRICS["accuracy"].example_scores(predictions, references)) == [1.0, 1.0, 0.0, 0.0]


def test_exact_match_drops_case_punctuation_articles_and_extra_spaces():
    predictions = ["The Eiffel Tower!", "an apple", "apples", "theater", "new   york", "a"]
    references = [("eiffel tower",), ("apple",), ("apple",), ("ater",), ("New York.",), ("the",)]
    # 1: articles and "!" go; 2: "an" goes; 3: plural stays; 4: "the" inside a word stays; 5: spaces, "."; 6: both ""
    assert list(METRICS["exact_match"].example_scores(predictions, references)) == [1, 1, 0, 0, 1, 1]
    assert score("exact_match", ["apples"], [("pear", "Apples.")]) == 1.0  # the best of the references


def test_qa_f1_by_hand():
    # normalised: prediction [cat, sat, on, mat], reference [cat, on, hat]; common cat, on: P 2/4, R 2/3
    # F1 = 2 (1/2)(2/3) / (1/2 + 2/3) = 4/7
    assert score("qa_f1", ["the cat sat on the mat"], [("a cat on a hat",)]) == pytest.approx(4 / 7)
    # repeated tokens count as often as both sides have them: x x y vs x y y -> common 2, P = R = 2/3
    assert score("qa_f1", ["x x y"], [("x y y",)]) == pytest.approx(2 / 3)
    assert score("qa_f1", ["dog"], [("cat",)]) == 0.0
    assert score("qa_f1", ["the cat sat on the mat", "dog"], [("a cat on a hat", "cat sat on mat"), ("cat",)]) \
        == pytest.approx((1.0 + 0.0) / 2)  # best reference of the first: all four tokens, F1 1


def test_rouge_l_of_a_hand_lcs():
    # LCS of "the cat was on the mat" and "the cat sat on the mat": the cat on the mat, 5 of 6 tokens each side
    assert score("rouge_l", ["the cat was on the mat"], [("the cat sat on the mat",)]) == pytest.approx(5 / 6)
    # "a b c d" vs "b d e": LCS b d; P 2/4, R 2/3, F 2 PR / (P + R) = 4/7; rouge-score lowercases
    assert score("rouge_l", ["A b c d"], [("b d e",)]) == pytest.approx(4 / 7)
    # punctuation only: 0 (the reference's guard); the best of two references
    assert score("rouge_l", ["...", "b d e"], [("a",), ("x", "b d e")]) == pytest.approx(0.5)


def test_macro_f1_counts_only_the_gold_labels():
    gold = [("pos",), ("pos",), ("neg", "pos"), ("neg",)]  # the first reference is the label
    predictions = ["pos", "maybe", "neg", "pos"]
    # pos: TP 1 (row 0), FP 1 (row 3), FN 1 (row 1) -> 2/(2+1+1) = 1/2; neg: TP 1, FP 0, FN 1 -> 2/3.
    # "maybe" is no gold label: only a miss of row 1's pos, not a third class with F1 0 ((1/2 + 2/3 + 0) / 3).
    assert score("macro_f1", predictions, gold) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_matthews_correlation_on_a_two_by_two_table():
    # TP 3, FN 2, FP 1, TN 2: MCC = (3*2 - 1*2) / sqrt((3+1)(3+2)(2+1)(2+2)) = 4 / sqrt(240)
    gold = ["acceptable"] * 5 + ["unacceptable"] * 3
    predictions = ["acceptable", " acceptable ", "acceptable", "unacceptable", "Acceptable",  # 3 right, 2 missed
                   "acceptable", "unacceptable", "no"]
    assert score("matthews_corr", predictions, [(g,) for g in gold]) == pytest.approx(4 / math.sqrt(240))


def test_pearson_on_three_points_and_an_unparsable_prediction_is_nan():
    # x = 2, 2, 5 (mean 3): -1, -1, 2; y = 1, 2, 3 (mean 2): -1, 0, 1; r = 3 / sqrt(6 * 2)
    assert score("pearson", ["2", " 2 ", "5"], [("1",), ("2",), ("3",)]) == pytest.approx(3 / math.sqrt(12))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NaN, not an error or a warning
        assert math.isnan(score("pearson", ["2", "two", "5"], [("1",), ("2",), ("3",)]))
        assert math.isnan(score("pearson", ["4", "4", "4"], [("1",), ("2",), ("3",)]))  # constant: undefined
    with pytest.raises(ValueError, match="gold output 'x' of example 1 is not a number"):
        score("pearson", ["1", "2"], [("1",), ("x",)])


@pytest.mark.parametrize("name", ["macro_f1", "matthews_corr", "pearson"])
def test_corpus_statistic_on_resamples_equals_the_library(name):
    """The vectorized statistic the bootstrap resamples, against scikit-learn / scipy on each resample."""
    from scipy.stats import pearsonr

    rng = np.random.default_rng(0)
    texts = {"macro_f1": ["a", "b", "c", "d"], "matthews_corr": ["acceptable", "unacceptable"],
             "pearson": ["1", "2", "3", "4", "5"]}[name]
    gold = [texts[i] for i in rng.integers(0, len(texts) - 1, 40)]  # the last text is never gold
    predictions = [texts[i] for i in rng.integers(0, len(texts), 40)]
    metric = METRICS[name]
    encoded_predictions, encoded_gold = metric.encoded(predictions, [(g,) for g in gold])
    rows = rng.integers(0, 40, (6, 40))
    got = metric.statistic(encoded_predictions[rows], encoded_gold[rows])
    for row, value in zip(rows, got):
        g, p = [gold[i] for i in row], [predictions[i] for i in row]
        if name == "macro_f1":
            expected = f1_score(g, p, average="macro", labels=np.unique(g))
        elif name == "matthews_corr":
            expected = matthews_corrcoef([x == "acceptable" for x in g], [x == "acceptable" for x in p])
        else:
            expected = pearsonr([float(x) for x in g], [float(x) for x in p]).statistic
        assert value == pytest.approx(expected, abs=1e-12)


def test_majority_over_texts_and_its_score_in_the_tasks_metric():
    assert majority_label(["b", "a", "b", "a", "c"]) == "a"  # a tie goes to the smaller text
    # always "pos" on gold pos, neg, neg, neg: accuracy 1/4; macro-F1: pos 2/(2+3) = 2/5, neg 0 -> 1/5
    test = [("pos",), ("neg",), ("neg",), ("neg",)]
    assert majority_baseline(["pos", "pos", "neg"], test) == pytest.approx(0.25)
    assert majority_baseline(["pos", "pos", "neg"], test, "macro_f1") == pytest.approx(0.2)
    with pytest.raises(ValueError, match="empty"):
        majority_label([])


def test_scores_report_what_was_asked_and_compute_others_on_reading():
    scores = Scores(["a b", "c"], [("a b",), ("b c",)], reported_metrics("qa_f1"))  # c vs b c: P 1, R 1/2
    assert dict(scores) == {"accuracy": 0.5, "qa_f1": pytest.approx((1 + 2 / 3) / 2)}
    assert scores["exact_match"] == 0.5 and "exact_match" not in scores  # read, not added to what is reported
    with pytest.raises(KeyError):
        scores["f2"]
    assert reported_metrics("accuracy") == ["accuracy"]
    assert score_texts(["x"], [("x",)], ["accuracy", "rouge_l"]) == {"accuracy": 1.0, "rouge_l": 1.0}


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="2 predictions but 1 examples"):
        score("accuracy", ["a", "b"], [("a",)])
    with pytest.raises(ValueError, match="empty"):
        score("macro_f1", [], [])
    with pytest.raises(ValueError, match="unknown metric 'f2'"):
        score_texts(["a"], [("a",)], ["f2"])
    with pytest.raises(ValueError, match="example 0: the prediction must be a text"):
        score("accuracy", [1], [("1",)])


# ---- the metric table ------------------------------------------------------------------------------------------


def test_the_shipped_table_is_the_references_and_covers_every_paper_task():
    table = read_metric_table(TABLE, REFERENCE_NAMES)  # checks each row's two names agree
    assert len(table) == 160
    assert {t: table[t] for t in ("rotten_tomatoes", "trec", "boolq", "xsum", "glue-cola", "mocha", "quoref",
                                  "crawl_domain")} == {
        "rotten_tomatoes": "macro_f1", "trec": "macro_f1", "boolq": "accuracy", "xsum": "rouge_l",
        "glue-cola": "matthews_corr", "mocha": "pearson", "quoref": "qa_f1", "crawl_domain": "exact_match"}
    lists = yaml.safe_load((REPO / "config" / "paper_tasks" / "multi_task.yaml").read_text())
    pairs = yaml.safe_load((REPO / "config" / "paper_tasks" / "single_task.yaml").read_text())["pairs"]
    tasks = set(lists["train"]) | set(lists["unseen"]) | set(pairs) | {t for ts in pairs.values() for t in ts}
    for name in PAPER_PRESETS:
        config = load_config(name)
        assert config["metric_table"] == "config/paper_tasks/metrics.csv"
        tasks |= set(config["tasks"])
    assert sorted(tasks - set(table)) == []


@pytest.mark.parametrize(("text", "message"), [
    ("task,metric\nboolq,accuracy\n", r"the first row must be the header task,metric,reference_metric"),
    ("task,metric,reference_metric\nboolq,accuracy,ACC\nxsum,rouge_l\n", r"row 3: needs 3 non-empty cells"),
    ("task,metric,reference_metric\nboolq,,ACC\n", r"row 2: needs 3 non-empty cells"),
    ("task,metric,reference_metric\nboolq,accuracy,ACC\n\nxsum,bleu,BLEU\n",  # a blank line still counts
     r"row 4: task 'xsum' has unknown metric 'bleu'"),
    ("task,metric,reference_metric\nboolq,exact_match,ACC\n",
     r"row 2: task 'boolq': metric 'exact_match' is the reference's 'EM', not 'ACC'"),
    ("task,metric,reference_metric\nboolq,accuracy,ACC\nboolq,accuracy,ACC\n", r"row 3: task 'boolq' is listed twice"),
    ("", r"an empty file"),
])
def test_a_malformed_table_names_its_file_and_row(tmp_path, text, message):
    path = tmp_path / "metrics.csv"
    path.write_text(text)
    with pytest.raises(MetricTableError, match=rf"metric table {path}.*{message}"):
        read_metric_table(path, REFERENCE_NAMES)


def test_a_missing_table_is_named(tmp_path):
    with pytest.raises(MetricTableError, match=rf"metric table {tmp_path / 'none.csv'}: cannot read it"):
        read_metric_table(tmp_path / "none.csv")


def test_a_tasks_own_primary_metric_wins_over_the_table():
    table = {"boolq": "accuracy", "xsum": "rouge_l"}
    assert with_table_metric("xsum", {"source": "crossfit"}, table) == {"source": "crossfit",
                                                                      "primary_metric": "rouge_l"}
    assert with_table_metric("xsum", {"source": "crossfit", "primary_metric": "qa_f1"}, table)["primary_metric"] \
        == "qa_f1"
    assert with_table_metric("other", {"source": "crossfit"}, table) == {"source": "crossfit"}


def test_the_presets_table_sets_the_metric_prepare_task_writes(tmp_path, paper_crossfit_dir):
    """config/paper.yaml's metric_table, its boolq, xsum and rotten_tomatoes entries, through prepare_task_job
    into task.json (what every later stage reads)."""
    config = load_config("paper.yaml")
    table = read_metric_table(REPO / config["metric_table"], REFERENCE_NAMES)
    expected = {"rotten_tomatoes": "macro_f1", "boolq": "accuracy", "xsum": "rouge_l"}
    for task, metric in expected.items():
        spec = {"task": with_table_metric(task, config["tasks"][task], table), "sizes": config["split_sizes"],
                "seed": 0, "crossfit_dir": str(paper_crossfit_dir)}
        summary = prepare_task_job(task, spec, tmp_path / task)
        assert summary["primary_metric"] == metric
        assert summary["metrics"] == reported_metrics(metric)
        assert json.loads((tmp_path / task / "task.json").read_text())["primary_metric"] == metric


def test_the_single_task_presets_dry_run_passes_the_tables_metric(workdir, paper_crossfit_dir):
    result = snakemake(workdir, "-n", "-p", "--until", "prepare_task", "--configfile",
                       str(REPO / "config" / "paper_single_task.yaml"),
                       "--config", f"crossfit_dir={paper_crossfit_dir}")
    assert result.returncode == 0, result.stdout[-3000:]
    specs = {}
    for line in result.stdout.splitlines():
        if "python -m deltaspace prepare_task" in line:
            task = line.split("--task ")[1].split()[0]
            specs[task] = json.loads(line.split("--spec ")[1].split(" --out")[0].strip("'"))["task"]
    assert specs == {"glue-sst2": {"source": "crossfit", "primary_metric": "accuracy"},
                     "rotten_tomatoes": {"source": "crossfit", "primary_metric": "macro_f1"},
                     "amazon_polarity": {"source": "crossfit", "primary_metric": "macro_f1"}}


def test_a_bad_metric_table_stops_planning(workdir, paper_crossfit_dir):
    (workdir / "bad.csv").write_text("task,metric,reference_metric\nglue-sst2,bleu,BLEU\n")
    result = snakemake(workdir, "-n", "--configfile", str(REPO / "config" / "paper_single_task.yaml"),
                       "--config", f"crossfit_dir={paper_crossfit_dir}", "metric_table=bad.csv")
    assert result.returncode != 0
    assert ("Invalid configuration: config key 'metric_table': metric table bad.csv, row 2: task 'glue-sst2' has "
            "unknown metric 'bleu'") in result.stdout, result.stdout[-3000:]


def test_a_nan_dev_score_never_pins_checkpoint_selection():
    from deltaspace.tasks import improves

    nan = float("nan")
    assert improves(0.1, None) and improves(nan, None)  # the first evaluation is the best so far, whatever it is
    assert improves(0.2, nan) and not improves(nan, 0.2) and not improves(nan, nan)
    assert improves(0.3, 0.2) and not improves(0.2, 0.2) and not improves(0.1, 0.2)
