"""One example: an input, its gold output text(s), and for classification its candidate answers and gold index.

A classification example (candidates and label) can be scored both ways: rank its candidates, or generate and
compare with the gold text. A generative example (no candidates; references only) is scored by generation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Example:
    input: str
    candidates: tuple[str, ...] = ()
    label: int | None = None  # index into candidates; None for a generative example
    references: tuple[str, ...] = ()  # every gold output text; defaults to (candidates[label],)

    def __post_init__(self) -> None:
        # Accept lists from JSON/YAML but store tuples so examples stay hashable.
        object.__setattr__(self, "candidates", tuple(self.candidates))
        object.__setattr__(self, "references", tuple(self.references))
        if not isinstance(self.input, str):
            raise ValueError(f"Example.input must be a string, got {type(self.input).__name__}")
        if not all(isinstance(c, str) for c in self.candidates + self.references):
            raise ValueError(f"Example candidates and references must be strings, got "
                             f"{list(self.candidates)!r}, {list(self.references)!r}")
        if not self.candidates:
            if self.label is not None:
                raise ValueError(f"Example.label {self.label!r} given without candidates")
            if not self.references or not all(r.strip() for r in self.references):
                raise ValueError("a generative example (no candidates) needs at least one non-empty reference")
            return
        if len(self.candidates) < 2:
            raise ValueError(f"Example needs at least two candidates, got {list(self.candidates)!r}")
        # bool is an int subclass; a True label is almost certainly a bug upstream.
        if isinstance(self.label, bool) or not isinstance(self.label, int):
            raise ValueError(f"Example.label must be an int, got {self.label!r}")
        if not 0 <= self.label < len(self.candidates):
            raise ValueError(
                f"Example.label {self.label} is outside candidates 0..{len(self.candidates) - 1}"
            )
        if not self.references:
            object.__setattr__(self, "references", (self.candidates[self.label],))
        elif self.references[0] != self.candidates[self.label]:
            raise ValueError(f"Example.references must start with the gold candidate "
                             f"{self.candidates[self.label]!r}, got {list(self.references)!r}")

    @property
    def generative(self) -> bool:
        return not self.candidates

    @property
    def answer(self) -> str:
        """The gold output text: the gold candidate, or a generative example's first reference."""
        return self.references[0]

    def to_json(self) -> dict[str, Any]:
        if self.generative:
            return {"input": self.input, "references": list(self.references)}
        data = {"input": self.input, "candidates": list(self.candidates), "label": self.label}
        if len(self.references) > 1:
            data["references"] = list(self.references)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Example":
        if not isinstance(data, dict):
            raise ValueError(f"an example must be a JSON object, got {type(data).__name__}")
        if "input" not in data or not ("references" in data or "candidates" in data):
            raise ValueError(f"example needs 'input' and either 'candidates' and 'label' or 'references'; "
                             f"keys present: {sorted(data)}")
        if "candidates" in data and "label" not in data:
            raise ValueError(f"example is missing key(s) ['label']; keys present: {sorted(data)}")
        for key in ("candidates", "references"):
            if key in data and not isinstance(data[key], (list, tuple)):
                raise ValueError(f"example {key!r} must be a list, got {data[key]!r}")
        return cls(input=data["input"], candidates=tuple(data.get("candidates", ())), label=data.get("label"),
                   references=tuple(data.get("references", ())))
