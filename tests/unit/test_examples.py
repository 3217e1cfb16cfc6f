"""The examples' own logic, without an engine (tests/integration runs them on the lab)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from types import ModuleType

import pytest

from zdd_swarm import events

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> ModuleType:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:  # the fabfile configures logging when imported, as fab runs it
        root.handlers[:] = handlers
        root.setLevel(level)
    return module


def test_fabfile_names_every_slot_of_a_batch(capsys: pytest.CaptureFixture[str]) -> None:
    fabfile = load("fabfile")
    fabfile.progress(events.BatchStarted("web", 0.0, 0, ("3", "4")))
    fabfile.progress(events.BatchStarted("web", 9.0, 1, ("5",), phase="rollback"))
    assert capsys.readouterr().out.splitlines() == [
        "web: update batch 1: slots 3, 4",
        "web: rollback batch 2: slot 5",
    ]
