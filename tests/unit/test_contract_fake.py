"""The engine-truth contract against ``FakeEngine`` (the same scenarios run
on the lab in tests/integration/test_contract.py)."""

from __future__ import annotations

import pytest

from tests.contract.scenarios import SCENARIOS, Scenario, run
from zdd_swarm import UpdateConfig
from zdd_swarm.testing import FakeClock, FakeEngine, ImageBehaviour


class FakeHarness:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.engine = FakeEngine(self.clock)
        self.engine.behave(self.image("crash"), ImageBehaviour(fail_after=1.0))

    def image(self, tag: str) -> str:
        return f"app:{tag}"

    def create(self, name: str, tag: str, replicas: int, update_config: UpdateConfig) -> None:
        self.engine.add_service(name, self.image(tag), replicas, update_config=update_config)

    def sleep(self, seconds: float) -> None:
        self.clock.sleep(seconds)

    def kill_task(self, name: str) -> str:
        service = self.engine._find(name)
        task = next(t for t in self.engine.tasks[service.id] if t.state == "running")
        task.state, task.error, task.exit_code = "failed", "task: non-zero exit (137)", 137
        task.changed_at = self.clock.t
        return task.id


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_the_fake_engine_keeps_the_contract(scenario: Scenario) -> None:
    harness = FakeHarness()
    assert run(harness, scenario, "svc") == scenario.expected(harness)
