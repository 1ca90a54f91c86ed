"""README.md is what a newcomer reads first: its links (and those of the documents it leads
to) reach a file that exists and, with ``#anchor``, a heading of that file; every benchmark
script is quoted in it (the charter: a benchmark "is quoted in README.md")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "benchmarks" / "HISTORY.md",
    ROOT / "data" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]

#: ``[text](target)`` and ``![alt](target)``, and reference definitions ``[label]: target``.
INLINE_LINK = re.compile(r"\]\(([^()\s]+)\)")
REFERENCE = re.compile(r"^\[[^\]]+\]:\s+(\S+)", re.MULTILINE)


def prose(text: str) -> str:
    """The text outside fenced code blocks (a link there is not a link)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for line in prose(path.read_text(encoding="utf-8")).splitlines():
        if line.startswith("#"):
            slug = anchor(line.lstrip("#"))
            n = 1
            unique = slug
            while unique in found:  # GitHub numbers repeated headings: x, x-1, x-2
                unique = f"{slug}-{n}"
                n += 1
            found.add(unique)
    return found


def links(path: Path) -> list[str]:
    text = prose(path.read_text(encoding="utf-8"))
    return INLINE_LINK.findall(text) + REFERENCE.findall(text)


def test_the_anchor_is_githubs() -> None:
    assert anchor(" Issue 13, session 28: quiet pairs (s28-lead, 23:23\u201323:39 UTC)") == (
        "issue-13-session-28-quiet-pairs-s28-lead-23232339-utc"
    )


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_reach_a_file_and_a_heading(document: Path) -> None:
    checked = 0
    for target in links(document):
        if re.match(r"[a-z]+:", target):  # https:, mailto: ...: not this repository's
            continue
        name, _, fragment = target.partition("#")
        linked = (document.parent / name).resolve() if name else document
        assert linked.exists(), f"{document.name}: {target}: no such file"
        if fragment and linked.suffix == ".md":
            assert fragment in anchors(linked), f"{document.name}: {target}: no such heading"
        checked += 1
    if document.name == "README.md" and document.parent == ROOT:
        # README links to the benchmark history and into it: the check above has work to do.
        assert checked >= 5


def test_every_benchmark_script_is_quoted_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    scripts = [p.name for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_")]
    assert len(scripts) >= 10
    assert [s for s in scripts if s not in readme] == []
