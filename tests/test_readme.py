"""The README stays short and its links lead somewhere: size, relative links, every docs page linked."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
MAX_README_BYTES = 10_000
# Written by a generator from workflow/schemas/config.schema.yaml; may not exist in a checkout yet.
GENERATED = {"docs/configuration.md"}

MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
BACKTICKED_DOC = re.compile(r"`(docs/[^`\s]+\.md)`")
RULE = re.compile(r"^\s*rule (\w+):", re.MULTILINE)  # indented: a rule defined under an if


def relative_links(page: Path) -> list[str]:
    """Repository paths (relative to the root) of the page's markdown links and backticked docs/*.md mentions;
    web links and in-page anchors are left out, an anchor after a path is dropped."""
    text = page.read_text()
    targets = MARKDOWN_LINK.findall(text)
    if page == README:
        targets += BACKTICKED_DOC.findall(text)
    paths = []
    for target in targets:
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        paths.append(path.relative_to(REPO).as_posix())
    return sorted(set(paths))


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


LINKS = [(page.relative_to(REPO).as_posix(), target) for page in pages() for target in relative_links(page)]


def test_readme_is_short():
    size = len(README.read_bytes())
    assert size <= MAX_README_BYTES, f"README.md has {size} bytes (at most {MAX_README_BYTES}): move detail to docs/"


@pytest.mark.parametrize(("page", "target"), LINKS, ids=[f"{page}->{target}" for page, target in LINKS])
def test_relative_link_exists(page, target):
    if target in GENERATED and not (REPO / target).exists():
        pytest.skip(f"{target} is generated from the config schema and has not been generated in this checkout")
    assert (REPO / target).exists(), f"{page} links to {target}, which does not exist"


def test_every_docs_page_is_linked_from_readme():
    linked = set(relative_links(README))
    pages_ = {page.relative_to(REPO).as_posix() for page in DOCS.glob("*.md")} - GENERATED
    assert pages_ - linked == set(), "docs pages not linked from README.md"


def test_readme_links_the_generated_config_reference():
    assert GENERATED <= set(relative_links(README))


def test_rule_table_names_every_rule():
    """The README's rule -> module table has one row per Snakemake rule (rule all only lists targets)."""
    rules = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        rules.update(RULE.findall(smk.read_text()))
    rows = set(re.findall(r"^\| `(\w+)` \|", README.read_text(), re.MULTILINE))
    assert rows == rules, f"missing rows: {sorted(rules - rows)}; rows of no rule: {sorted(rows - rules)}"


def test_rule_table_names_the_function_each_command_runs():
    """The table's function column is the CLI's own table (deltaspace.cli.COMMANDS), rule by rule."""
    from deltaspace.cli import COMMANDS

    rows = dict(re.findall(r"^\| `(\w+)` \| `[\w.]+` \| `deltaspace\.([\w.]+)` \|$", README.read_text(), re.MULTILINE))
    assert rows, "no rule rows found in README.md"
    for rule, function in rows.items():
        module, name = COMMANDS[rule].target.split(":")
        assert function == f"{module}.{name}", rule
