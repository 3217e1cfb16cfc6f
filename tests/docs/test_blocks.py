"""Every block of the documents is run, or says why not (see conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.conftest import MARKER, ROOT, documents

FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<language>[^\n`]*)\n.*?^(?P=indent)```[ \t]*$", re.S | re.M
)
# python and sh run; text is output, go quotes swarmkit's source
LANGUAGES = {"python", "sh", "text", "go"}


@pytest.mark.parametrize("path", list(documents()), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_block_has_a_known_language(path: Path) -> None:
    text = path.read_text()
    blocks = list(FENCE.finditer(text))
    assert blocks or "```" not in text
    unknown = [
        (text.count("\n", 0, b.start()) + 1, b.group("language"))
        for b in blocks
        if b.group("language").strip() not in LANGUAGES
    ]
    assert unknown == [], f"blocks that neither run nor are text or go: {unknown}"


@pytest.mark.parametrize("path", list(documents()), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_marker_stands_before_a_block_that_runs(path: Path) -> None:
    text = path.read_text()
    starts = {b.start() for b in FENCE.finditer(text) if b.group("language") in ("python", "sh")}
    for comment in re.finditer(r"<!--\s*(not run|run):", text):
        end = text.index("-->", comment.start()) + 3
        line = text.count("\n", 0, comment.start()) + 1
        following = end + len(text[end:]) - len(text[end:].lstrip())
        assert following in starts, (
            f"line {line}: the marker is not right before a python or sh block"
        )
        assert MARKER.search(text, comment.start(), following), f"line {line}: a malformed marker"
