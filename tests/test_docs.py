"""The documentation is self-contained: every relative link in the Markdown docs resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".venv", ".git", "results", "demo", "artifacts", "node_modules"}
DOCS = sorted(
    p for p in ROOT.rglob("*.md") if not SKIP.intersection(p.relative_to(ROOT).parts[:-1])
)
# [text](target) outside code spans; a target with a scheme or an anchor only is not a file.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _links(text: str) -> list[str]:
    text = re.sub(r"`[^`]*`", "", text)
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z]+:|^#", t)]


def test_docs_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in DOCS}
    assert {"README.md", "docs/ARCHITECTURE.md", "docs/API.md", "docs/BUNDLE.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc: Path) -> None:
    missing = [
        target
        for target in _links(doc.read_text(encoding="utf-8"))
        if not (doc.parent / target.split("#", 1)[0]).resolve().exists()
    ]
    assert not missing, f"{doc.relative_to(ROOT)}: broken links {missing}"
    for target in _links(doc.read_text(encoding="utf-8")):
        resolved = (doc.parent / target.split("#", 1)[0]).resolve()
        assert resolved.is_relative_to(ROOT), f"{doc.relative_to(ROOT)}: {target} leaves the repo"


def test_link_finder_sees_links_and_ignores_code() -> None:
    text = "see [A](docs/A.md), [web](https://x.org), [top](#t) and `[no](code.md)`"
    assert _links(text) == ["docs/A.md"]
