"""The code blocks of README.md and docs/*.md, run as tests with Sybil.

Sybil parses the Markdown fenced blocks and runs each as a pytest item, in
document order, in one namespace per document (so a block can use what an
earlier one imported). What runs where:

- ``python`` blocks run here, against a ``FakeEngine`` in simulated time:
  ``DockerEngine`` and the controller's clock are replaced, so
  ``zdd_swarm.update("web", ...)`` rolls out on a fake swarm whose service
  ``web`` runs ``registry.example.com/web:1`` (4 replicas), and ``HttpGate``
  and ``TcpGate`` samples succeed without the network. A block that starts
  with ``>>>`` is a doctest: its output is checked. A block whose first line
  is ``# NAME.py`` is a file: it is written to the document's working
  directory (a temporary directory that also holds the examples' compose
  file), for a later shell block to use.
- ``sh`` blocks run on the lab (a real swarm, marked ``integration``) with
  ``DOCKER_HOST`` pointing at it, on a fresh service whose name replaces
  ``web`` (and ``shop_web``) and with ``registry.example.com/web:N`` replaced
  by the lab's image ``vN``; a block after ``<!-- run: local -->`` runs here
  instead, in the document's working directory.
- ``<!-- not run: REASON -->`` right before a block skips it, with the reason.
- ``text`` blocks are output samples and ``go`` blocks quote swarmkit's
  source: neither is code of ours. tests/docs/test_blocks.py checks that no
  block has another language and that every marker stands before a block.

The documents are listed in ``documents.txt``, next to this file.
"""

from __future__ import annotations

import contextlib
import doctest
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import SkipTest

import pytest
from sybil import Document, Example, Region, Sybil
from sybil.evaluators.doctest import DocTestEvaluator
from sybil.evaluators.python import PythonEvaluator
from sybil.integration.pytest import SybilFile, SybilItem
from sybil.parsers.abstract.doctest import DocTestStringParser
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer

import zdd_swarm
import zdd_swarm.controller
import zdd_swarm.lab

# the lab's fixtures; only the blocks that run on the lab ask for them
from tests.integration.conftest import docker_client, lab  # noqa: F401
from zdd_swarm.gates import GateSample, HttpGate, TcpGate
from zdd_swarm.testing import FakeClock, FakeEngine, ImageBehaviour

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = Path(__file__).with_name("documents.txt")
COMPOSE = ROOT / "examples" / "docker-compose.yml"
MARKER = re.compile(r"<!--\s*(not run|run):\s*((?:(?!-->).)*?)\s*-->\s*\Z", re.S)
IMAGE = re.compile(r"registry\.example\.com/web:(\w+)")
SERVICE = re.compile(r"(?<![\w./:@-])(shop_web|web)(?![\w./:@-])")


def marker_before(document: Document, start: int) -> tuple[str, str] | None:
    """The ``<!-- not run: ... -->`` or ``<!-- run: ... -->`` comment that
    stands right before the block starting at ``start``."""
    match = MARKER.search(document.text, max(0, start - 1000), start)
    return (match.group(1), match.group(2)) if match else None


# -- evaluators ------------------------------------------------------------


def skip(example: Example) -> None:
    raise SkipTest(f"not run: {example.parsed}")


_python = PythonEvaluator()


def run_python(example: Example) -> None:
    source = str(example.parsed)
    first = source.splitlines()[0].strip() if source else ""
    file = re.fullmatch(r"# ([\w-]+\.py)", first)
    if file:
        (example.namespace["workdir"] / file.group(1)).write_text(source)
        return
    try:
        _python(example)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise AssertionError(f"the block exited with {exc.code!r}") from exc


@dataclass(frozen=True)
class Shell:
    source: str
    local: bool


def _bash(source: str, cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", source],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def run_shell(example: Example) -> None:
    _bash(example.parsed.source, example.namespace["workdir"], _env())


def run_on_lab(example: Example) -> None:
    """The block on the lab: a fresh service stands in for ``web``."""
    request: pytest.FixtureRequest = example.namespace["request"]
    the_lab = request.getfixturevalue("lab")
    client = request.getfixturevalue("docker_client")
    from tests.integration.support import create_service

    # "<prefix>_web": --compose files find the compose service "web" by it
    name = f"d{uuid.uuid4().hex[:6]}_web"
    source = IMAGE.sub(lambda m: the_lab.image(f"v{m.group(1)}"), example.parsed.source)
    source = SERVICE.sub(name, source)
    create_service(client, the_lab, name, "v1", replicas=4)
    env = _env()
    env["DOCKER_HOST"] = the_lab.docker_host
    try:
        _bash(source, example.namespace["workdir"], env)
    finally:
        with contextlib.suppress(Exception):
            client.api.remove_service(name)


class InOrder:
    """A document's blocks build on each other, but pytest-xdist may hand
    them to different workers, and a worker may tear a document down between
    two of its blocks. So before a block runs, the earlier python blocks of
    its document that have not run since the document was set up in this
    process run first."""

    def __init__(self, evaluator: Any, replay: bool) -> None:
        self.evaluator = evaluator
        self.replay = replay

    def __call__(self, example: Example) -> Any:
        done: set[int] = example.namespace.setdefault("_done", set())
        for earlier in example.document.examples():
            if earlier.region.start >= example.region.start:
                break
            evaluator = earlier.region.evaluator
            if earlier.region.start not in done and isinstance(evaluator, InOrder):
                done.add(earlier.region.start)
                if evaluator.replay:
                    evaluator.evaluator(earlier)
        done.add(example.region.start)
        return self.evaluator(example)


def on_lab(item: pytest.Item) -> bool:
    evaluator = item.example.region.evaluator if isinstance(item, SybilItem) else None
    return isinstance(evaluator, InOrder) and evaluator.evaluator is run_on_lab


# -- the parser ------------------------------------------------------------


class Blocks:
    """``python`` and ``sh`` fenced blocks, each with the marker before it."""

    def __init__(self) -> None:
        self.lexers = [
            FencedCodeBlockLexer("python", {"language": "language", "source": "source"}),
            FencedCodeBlockLexer("sh", {"language": "language", "source": "source"}),
        ]
        flags = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
        self.doctests = DocTestStringParser(DocTestEvaluator(flags))

    def __call__(self, document: Document) -> Iterable[Region]:
        regions = sorted(
            (region for lexer in self.lexers for region in lexer(document)),
            key=lambda region: region.start,
        )
        for region in regions:
            source = region.lexemes["source"]
            marker = marker_before(document, region.start)
            if marker and marker[0] == "not run":
                if not marker[1]:
                    raise ValueError(f"{document.path}: 'not run' needs a reason")
                region.parsed, region.evaluator = marker[1], InOrder(skip, replay=False)
                yield region
            elif region.lexemes["language"] == "sh":
                local = marker == ("run", "local")
                if marker and not local:
                    raise ValueError(f"{document.path}: unknown marker {marker}")
                region.parsed = Shell(source.text, local)
                region.evaluator = InOrder(run_shell if local else run_on_lab, replay=False)
                yield region
            elif str(source).startswith(">>>"):
                for doctest_region in self.doctests(source, document.path):
                    doctest_region.adjust(region, source)
                    doctest_region.evaluator = InOrder(doctest_region.evaluator, replay=True)
                    yield doctest_region
            else:
                region.parsed, region.evaluator = source, InOrder(run_python, replay=True)
                yield region


# -- the documents' world --------------------------------------------------


def setup(namespace: dict[str, Any]) -> None:
    """A fake swarm, simulated time, no network, a working directory."""
    patch = pytest.MonkeyPatch()
    clock = FakeClock()
    engine = FakeEngine(clock)
    engine.add_service("web", "registry.example.com/web:1", replicas=4)
    engine.behave("registry.example.com/web:bad", ImageBehaviour(fail_after=1.0))

    def docker_engine(host: str | None = None) -> FakeEngine:
        return engine

    patch.setattr(zdd_swarm, "DockerEngine", docker_engine)
    patch.setattr(zdd_swarm.controller, "DockerEngine", docker_engine)
    patch.setattr(zdd_swarm.controller, "SystemClock", lambda: clock)
    patch.setattr(HttpGate, "sample", lambda self: GateSample(True, "HTTP 200"))
    patch.setattr(TcpGate, "sample", lambda self: GateSample(True, "connected"))

    def no_lab(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a python block of the docs must not touch the shared lab")

    # The module's name, not the class: the lab fixture that the sh blocks ask
    # for (tests/integration/conftest.py) keeps the real class, also when a
    # worker first needs it while a document is set up.
    patch.setattr(zdd_swarm.lab, "Lab", no_lab)
    workdir = Path(tempfile.mkdtemp(prefix="zdd-docs-"))
    shutil.copy(COMPOSE, workdir / "docker-compose.yml")
    patch.chdir(workdir)
    root, ours = logging.getLogger(), logging.getLogger("zdd_swarm")
    saved = (list(root.handlers), root.level, list(ours.handlers), ours.level, ours.propagate)

    class Metrics:  # the "your own check" of docs/gates-and-thresholds.md
        def error_rate(self, service: str, window: str) -> float:
            return 0.0

    namespace.update(
        patch=patch,
        clock=clock,
        engine=engine,
        workdir=workdir,
        saved_logging=saved,
        metrics=Metrics(),
    )


def teardown(namespace: dict[str, Any]) -> None:
    namespace["patch"].undo()
    root, ours = logging.getLogger(), logging.getLogger("zdd_swarm")
    root_handlers, root_level, handlers, level, propagate = namespace["saved_logging"]
    root.handlers[:], ours.handlers[:] = root_handlers, handlers
    root.setLevel(root_level)
    ours.setLevel(level)
    ours.propagate = propagate
    sys.modules.pop("deploy", None)
    namespace.pop("_done", None)
    shutil.rmtree(namespace["workdir"], ignore_errors=True)


SYBIL = Sybil(
    parsers=[Blocks()],
    patterns=["*.md"],
    setup=setup,
    teardown=teardown,
    fixtures=["request"],
)


def documents() -> Iterator[Path]:
    for line in DOCUMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            yield from sorted(ROOT.glob(line))


class DocumentList(pytest.File):
    """``documents.txt``: collects the Markdown files it names."""

    def collect(self) -> Iterator[SybilFile]:
        for path in documents():
            yield SybilFile.from_parent(self, path=path, sybils=[SYBIL])


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path == DOCUMENTS:
        return DocumentList.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if on_lab(item):
            item.add_marker(pytest.mark.integration)
