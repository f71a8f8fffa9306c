"""Examples from a CrossFit task folder ({task}_train/dev/test.tsv, 'input<TAB>output[<TAB>output...]' lines).

Three kinds, told apart on the train file: multiple choice (inputs carry '(A) ... (B) ...' options), classification
(at most max_candidates distinct outputs) and generative (free text: every output column is a reference)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from .errors import TaskDataError
from .example import Example
from .raw_task import SPLIT_NAMES
from .source_options import CrossFitSource

_OPTION_MARKER = re.compile(r"\(([A-Z])\)\s*")


def parse_options(text: str) -> tuple[str, list[str]] | None:
    """Split 'question (A) opt1 (B) opt2 ...' into (question, [opt1, opt2, ...]); None if no options."""
    markers = list(_OPTION_MARKER.finditer(text))
    # The last run A, B, C, ... wins, so an '(A)' inside the question does not cut it short.
    for start in reversed(range(len(markers))):
        if markers[start].group(1) != "A":
            continue
        run = [markers[start]]
        for marker in markers[start + 1:]:
            if marker.group(1) == chr(ord(run[-1].group(1)) + 1):
                run.append(marker)
        if len(run) < 2:
            continue
        ends = [marker.start() for marker in run[1:]] + [len(text)]
        options = [text[marker.end():end].strip() for marker, end in zip(run, ends)]
        if all(options):
            return text[: run[0].start()].strip(), options
    return None


def _normalised(text: str) -> str:
    return " ".join(text.split()).casefold()


def _read_rows(task: str, path: Path) -> list[tuple[str, tuple[str, ...], int]]:
    """(input, every non-empty output column, line number) for every non-empty line."""
    if not path.is_file():
        raise TaskDataError(f"task {task!r}: CrossFit file {path} does not exist")
    pairs = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 2:
                raise TaskDataError(f"task {task!r}: {path} line {line_number} has no tab between input and output")
            outputs = tuple(part.strip() for part in parts[1:] if part.strip())
            if not outputs:
                raise TaskDataError(f"task {task!r}: {path} line {line_number} has an empty output")
            pairs.append((parts[0].strip(), outputs, line_number))
    return pairs


def _label_pairs(rows):
    # A classification or multiple-choice label is the first output; ' [SEP] ' may join several gold answers.
    return [(text, outputs[0].split(" [SEP] ")[0].strip(), line) for text, outputs, line in rows]


def _generative(rows) -> list[Example]:
    return [Example(input=text, references=outputs) for text, outputs, _ in rows if text]


def _multiple_choice(pairs: list[tuple[str, str, int]]) -> tuple[list[Example], int]:
    examples, unmatched = [], 0
    for text, answer, _ in pairs:
        parsed = parse_options(text)
        if parsed is None:
            unmatched += 1
            continue
        question, options = parsed
        matches = [i for i, option in enumerate(options) if _normalised(option) == _normalised(answer)]
        if not matches or len(set(options)) != len(options):
            unmatched += 1
            continue
        examples.append(Example(input=question or text, candidates=tuple(options), label=matches[0]))
    return examples, unmatched


def _looks_multiple_choice(pairs: list[tuple[str, str, int]]) -> bool:
    # Most training inputs must carry (A)/(B) options for the task to be read as multiple choice.
    examples, unmatched = _multiple_choice(pairs)
    return len(examples) > unmatched


def resolve_crossfit_path(task: str, spec: Mapping[str, Any], crossfit_dir: Path | str | None) -> dict[str, Any]:
    """The spec with a concrete 'path': a relative one, or the task's own name when 'path' is left out,
    lies under crossfit_dir (the one folder a user gives for all CrossFit tasks)."""
    spec = dict(spec)
    path = spec.get("path")
    if path is None and crossfit_dir is None:
        raise TaskDataError(
            f"task {task!r}: source 'crossfit' needs key 'path', or a top-level 'crossfit_dir' holding a folder "
            f"named {task!r} (e.g. --config crossfit_dir=/path/to/crossfit/data)"
        )
    path = Path(task if path is None else path)
    if crossfit_dir is not None and not path.is_absolute():
        path = Path(crossfit_dir) / path
    spec["path"] = str(path)
    return spec


def crossfit_files(spec: Mapping[str, Any]) -> dict[str, Path]:
    """split -> the file a CrossFit task folder must hold for it: <folder>/<prefix>_<split>.tsv."""
    folder = Path(spec["path"])
    prefix = spec.get("prefix", folder.name)
    return {split: folder / f"{prefix}_{split}.tsv" for split in SPLIT_NAMES}


def missing_crossfit_files(spec: Mapping[str, Any]) -> list[Path]:
    """The task's folder if it is absent, else those of its three split files that are absent."""
    folder = Path(spec["path"])
    if not folder.is_dir():
        return [folder]
    return [path for path in crossfit_files(spec).values() if not path.is_file()]


def load_crossfit_splits(task: str, spec: dict[str, Any]) -> tuple[dict[str, list[Example]], dict[str, int]]:
    folder = Path(spec["path"])
    if not folder.is_dir():
        raise TaskDataError(f"task {task!r}: CrossFit folder {folder} does not exist (key 'path')")
    max_candidates = spec.get("max_candidates", CrossFitSource.max_candidates)
    files = crossfit_files(spec)
    rows = {split: _read_rows(task, path) for split, path in files.items()}
    pairs = {split: _label_pairs(split_rows) for split, split_rows in rows.items()}
    splits: dict[str, list[Example]] = {}
    notes: dict[str, int] = {}
    if _looks_multiple_choice(pairs["train"]):
        for split in SPLIT_NAMES:
            splits[split], unmatched = _multiple_choice(pairs[split])
            if unmatched:
                notes[f"{split}_rows_without_matching_option"] = unmatched
        return splits, notes
    candidates = tuple(sorted({answer for _, answer, _ in pairs["train"]}))
    if len(candidates) > max_candidates:
        # Free-text outputs: scored by generation against every gold output (scoring: generate).
        return {split: _generative(split_rows) for split, split_rows in rows.items()}, notes
    if len(candidates) < 2:
        raise TaskDataError(f"task {task!r}: {files['train']} has fewer than two distinct outputs: {list(candidates)}")
    index_of = {answer: i for i, answer in enumerate(candidates)}
    for split in SPLIT_NAMES:
        examples = []
        for text, answer, line_number in pairs[split]:
            if answer not in index_of:
                raise TaskDataError(
                    f"task {task!r}: {files[split]} line {line_number} has output {answer!r}, not among the "
                    f"train outputs {list(candidates)}"
                )
            if text:
                examples.append(Example(input=text, candidates=candidates, label=index_of[answer]))
        splits[split] = examples
    return splits, notes
