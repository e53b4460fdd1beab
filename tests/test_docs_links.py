"""Every relative link in README.md and docs/*.md points at a file that exists, and every #anchor at a heading.

Anchors follow GitHub's rule for heading ids (lowercase; punctuation other than ``-`` and ``_`` dropped; spaces
become ``-``; a repeated heading gets ``-1``, ``-2``, ...). Links and headings inside fenced code blocks and inline
code are not links. External links (``http(s)://``, ``mailto:``) are not fetched.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code removed."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, _INLINE_CODE.sub("", line)))
    return lines


def slug(heading: str) -> str:
    """GitHub's id for a heading's text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading id of a Markdown page, numbered as GitHub numbers repeated headings."""
    seen: dict[str, int] = {}
    ids = set()
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            ids.add(base if count == 0 else f"{base}-{count}")
    return ids


def broken_links(page: Path, root: Path = REPO_ROOT) -> list[str]:
    """The page's relative links (and anchors) that resolve to nothing, as ``page:line: target (why)``."""
    text = page.read_text(encoding="utf-8")
    problems = []
    for number, line in prose_lines(text):
        for match in _LINK.finditer(line):
            target = match.group(1)
            if _EXTERNAL.match(target):
                continue
            path_part, _, anchor = target.partition("#")
            destination = (page.parent / path_part).resolve() if path_part else page
            where = f"{page.relative_to(root)}:{number}: {target}"
            if not destination.exists():
                problems.append(f"{where} (no such file)")
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination.read_text("utf-8")):
                problems.append(f"{where} (no heading #{anchor} in {destination.relative_to(root)})")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    assert broken_links(page) == []


def test_the_docs_pages_exist_and_the_readme_links_each_one():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    pages = [p.name for p in PAGES if p.parent.name == "docs"]
    assert {"operations.md", "handler.md", "local-target.md", "experiment.md", "benchmarks.md"} <= set(pages)
    assert [name for name in pages if f"(docs/{name}" not in readme] == []


def test_a_broken_file_link_and_a_missing_anchor_are_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## A `code` heading: yes\n\n## Twice\n\n## Twice\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/other.md#a-code-heading-yes) [ok](docs/other.md#twice-1) [ok](#top) [web](https://example.com/x)\n"
        "# Top\n"
        "[gone](docs/missing.md) [bad anchor](docs/other.md#nope) [self](#nowhere)\n"
        "`[in code](docs/missing.md)`\n"
        "```\n[in a block](docs/missing.md)\n```\n"
    )
    assert broken_links(page, root=tmp_path) == [
        "README.md:3: docs/missing.md (no such file)",
        "README.md:3: docs/other.md#nope (no heading #nope in docs/other.md)",
        "README.md:3: #nowhere (no heading #nowhere in README.md)",
    ]


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("The real CLIs: `python -m local env`", "the-real-clis-python--m-local-env"),
        ("`cdktf diff` in CI", "cdktf-diff-in-ci"),
        ("Exactly once, and what each status means", "exactly-once-and-what-each-status-means"),
        ("Upgrading from MySQL 8.0", "upgrading-from-mysql-80"),
    ],
)
def test_heading_ids_follow_githubs_rule(heading, expected):
    assert slug(heading) == expected
