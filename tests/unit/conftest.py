from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from zdd_swarm.testing import FakeClock, FakeEngine


@pytest.fixture(autouse=True)
def _logging_defaults() -> Iterator[None]:
    """The CLI configures the ``zdd_swarm`` logger (and a test may configure
    structlog); give every test the defaults back."""
    logger = logging.getLogger("zdd_swarm")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    structlog.reset_defaults()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engine(clock: FakeClock) -> FakeEngine:
    return FakeEngine(clock)
