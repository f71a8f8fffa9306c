"""One rank-classification example: an input, its candidate answers and the gold index."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Example:
    input: str
    candidates: tuple[str, ...]
    label: int  # index into candidates

    def __post_init__(self) -> None:
        # Accept lists from JSON/YAML but store a tuple so examples stay hashable.
        object.__setattr__(self, "candidates", tuple(self.candidates))
        if not isinstance(self.input, str):
            raise ValueError(f"Example.input must be a string, got {type(self.input).__name__}")
        if len(self.candidates) < 2:
            raise ValueError(f"Example needs at least two candidates, got {list(self.candidates)!r}")
        if not all(isinstance(c, str) for c in self.candidates):
            raise ValueError(f"Example candidates must be strings, got {list(self.candidates)!r}")
        # bool is an int subclass; a True label is almost certainly a bug upstream.
        if isinstance(self.label, bool) or not isinstance(self.label, int):
            raise ValueError(f"Example.label must be an int, got {self.label!r}")
        if not 0 <= self.label < len(self.candidates):
            raise ValueError(
                f"Example.label {self.label} is outside candidates 0..{len(self.candidates) - 1}"
            )

    @property
    def answer(self) -> str:
        return self.candidates[self.label]

    def to_json(self) -> dict[str, Any]:
        return {"input": self.input, "candidates": list(self.candidates), "label": self.label}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Example":
        if not isinstance(data, dict):
            raise ValueError(f"an example must be a JSON object, got {type(data).__name__}")
        missing = [key for key in ("input", "candidates", "label") if key not in data]
        if missing:
            raise ValueError(f"example is missing key(s) {missing}; keys present: {sorted(data)}")
        if not isinstance(data["candidates"], (list, tuple)):
            raise ValueError(f"example 'candidates' must be a list, got {data['candidates']!r}")
        return cls(input=data["input"], candidates=tuple(data["candidates"]), label=data["label"])
