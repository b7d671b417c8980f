"""The README and docs/*.md point at things that exist: every relative link names a file of the repository, and every
test path they name (tests/....py, optionally ::test_name) is a real file holding that test. Docs drift when code
moves; this catches it in the fast loop, before a reader follows a dead link."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250

# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis (an optional "title"
# after it is ignored). Reference-style links are not used in these docs.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# tests/unit/test_x.py or tests/e2e/test_x.py::test_name (a [param] suffix after the name is allowed and ignored)
TEST_PATH = re.compile(r"\btests/[\w/]+\.py(?:::(\w+))?")
EXTERNAL = ("http://", "https://", "mailto:")


def _ids(pages: list[Path]) -> list[str]:
    return [str(page.relative_to(ROOT)) for page in pages]


def relative_links(text: str) -> list[str]:
    """The link targets of a Markdown text that point into the repository: no URL, no mailto, no bare #anchor."""
    targets = []
    for target in LINK.findall(text):
        if target.startswith(EXTERNAL) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def test_relative_links_are_parsed_as_a_reader_follows_them():
    text = (
        "[a](docs/a.md) ![img](b.png) [c](docs/c.md#part) [d](https://example.com) [e](mailto:x@example.com) "
        '[f](#local) [g](<docs/g.md>) [h](docs/h.md "title")'
    )
    assert relative_links(text) == ["docs/a.md", "b.png", "docs/c.md", "docs/g.md", "docs/h.md"]


def test_test_paths_are_found_with_and_without_a_test_name():
    text = "see tests/app/test_x.py, `tests/e2e/test_y.py::test_one[redis]` and tests/unit/test_z.py::test_two."
    found = [(match.group(0).split("::")[0], match.group(1)) for match in TEST_PATH.finditer(text)]
    assert found == [
        ("tests/app/test_x.py", None),
        ("tests/e2e/test_y.py", "test_one"),
        ("tests/unit/test_z.py", "test_two"),
    ]


def test_there_are_docs_pages():
    assert len(PAGES) > 1, "docs/*.md: no pages found"


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_relative_link_points_to_an_existing_file(page: Path):
    missing = [target for target in relative_links(page.read_text()) if target and not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(ROOT)}: links to missing files: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_named_test_path_exists(page: Path):
    problems = []
    for match in TEST_PATH.finditer(page.read_text()):
        path = ROOT / match.group(0).split("::", 1)[0]
        name = match.group(1)
        if not path.is_file():
            problems.append(f"{match.group(0)}: no such file")
        elif name and not re.search(rf"^\s*(?:async\s+)?def {re.escape(name)}\(", path.read_text(), re.MULTILINE):
            problems.append(f"{match.group(0)}: no `def {name}` in {path.relative_to(ROOT)}")
    assert not problems, f"{page.relative_to(ROOT)}: " + "; ".join(problems)


def test_readme_is_short_enough_to_find_the_way_in():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; at most {README_MAX_LINES}: move detail into docs/"
