"""The documentation the code and configs point to exists and covers what the code knows."""

from __future__ import annotations

import re
from pathlib import Path

from derain.data import LAYOUTS

ROOT = Path(__file__).resolve().parents[1]
CITED = re.compile(r"docs/([\w-]+\.md)")
LINKED = re.compile(r"\]\(([\w-]+\.md)(?:#[\w-]+)?\)")


def _texts():
    for folder, patterns in (
        ("src", ("*.py", "*.md", "*.yaml")),
        ("conf", ("*.yaml",)),
        ("tests", ("*.py",)),
        ("docs", ("*.md",)),
        ("notebooks", ("*.ipynb",)),
    ):
        for pattern in patterns:
            yield from (ROOT / folder).rglob(pattern)
    yield ROOT / "README.md"
    yield ROOT / "Makefile"


def test_every_cited_docs_page_exists():
    missing = set()
    for path in _texts():
        text = path.read_text(encoding="utf-8")
        names = set(CITED.findall(text))
        if path.parent == ROOT / "docs":
            names |= set(LINKED.findall(text))  # links between pages
        missing |= {
            (str(path.relative_to(ROOT)), n) for n in names if not (ROOT / "docs" / n).is_file()
        }
    assert not missing, f"cited pages that do not exist: {sorted(missing)}"


def test_the_datasets_page_names_every_layout_the_code_reads():
    page = (ROOT / "docs" / "datasets.md").read_text(encoding="utf-8")
    page = page.split("## Layouts")[1].split("\n## ")[0]
    rows = set(re.findall(r"^\| `(\w+)` \|", page, flags=re.MULTILINE))
    assert set(LAYOUTS) <= rows, f"layouts missing from docs/datasets.md: {set(LAYOUTS) - rows}"
    # in the order auto-detection tries them
    table = [
        name for name in re.findall(r"^\| `(\w+)` \|", page, flags=re.MULTILINE) if name in LAYOUTS
    ]
    assert table == list(LAYOUTS)
