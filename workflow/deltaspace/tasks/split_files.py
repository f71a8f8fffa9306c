"""Read and atomically write split files: one Example JSON object per line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from ..io import atomic_path
from .errors import TaskDataError
from .example import Example


def encode_examples(examples: Iterable[Example]) -> bytes:
    # ensure_ascii=False keeps the text readable; fixed key order keeps the bytes reproducible.
    lines = [json.dumps(example.to_json(), ensure_ascii=False) + "\n" for example in examples]
    return "".join(lines).encode("utf-8")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def read_split(path: Path | str) -> list[Example]:
    """Examples of a split file; a missing file or a bad line is a TaskDataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise TaskDataError(f"split file {path} does not exist; run the task preparation step first")
    examples = []
    # Lines are decoded one by one so a bad byte is reported with its line number too.
    for line_number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            examples.append(Example.from_json(json.loads(line.decode("utf-8"))))
        except (ValueError, TypeError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise TaskDataError(f"split file {path} line {line_number} is corrupt: {error}") from None
    return examples
