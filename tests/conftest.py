"""What every test directory shares."""

from __future__ import annotations

import pytest

#: Tests on a real engine that fail are run once more: the engine has races of
#: its own (docs/reliability.md: the replaced updater's pause written over a
#: requested rollback), and a 2-core machine shared by three test workers
#: delays the overlay network now and then. A test that fails twice fails;
#: every rerun is listed in the summary (pytest-rerunfailures).
ENGINE_DIRS = ("integration", "platform")
RERUNS = 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(part in ENGINE_DIRS for part in item.path.parts[-3:-1]):
            item.add_marker(pytest.mark.flaky(reruns=RERUNS))
