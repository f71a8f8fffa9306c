"""The mutation check (tests/mutation_check.py) must keep applying to the code as it changes."""
from mutation_check import MUTANTS, missing_originals


def test_every_planted_mutation_still_finds_its_original_code():
    assert missing_originals() == [], "update MUTANTS in tests/mutation_check.py to the moved code"
    assert len({m.name for m in MUTANTS}) == len(MUTANTS) >= 20
