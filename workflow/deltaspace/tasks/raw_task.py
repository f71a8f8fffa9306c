"""Examples of one task as loaded from its source, before de-duplication and splitting."""

from __future__ import annotations

from dataclasses import dataclass, field

from .example import Example

SPLIT_NAMES = ("train", "dev", "test")


@dataclass(frozen=True)
class RawTask:
    name: str
    examples: tuple[Example, ...] = ()  # pooled examples, to be split by prepare_task
    given_splits: dict[str, tuple[Example, ...]] | None = None  # splits the source fixes (CrossFit)
    primary_metric: str = "accuracy"
    notes: dict[str, int] = field(default_factory=dict)  # rows the loader dropped, by reason

    def all_examples(self) -> list[Example]:
        if self.given_splits is None:
            return list(self.examples)
        return [example for split in SPLIT_NAMES for example in self.given_splits.get(split, ())]

    @property
    def kind(self) -> str:
        # Generative when any example has free-text outputs only; classification when every example ranks the
        # same answers; else multiple choice.
        if any(example.generative for example in self.all_examples()):
            return "generative"
        candidate_sets = {example.candidates for example in self.all_examples()}
        return "classification" if len(candidate_sets) <= 1 else "multiple_choice"
