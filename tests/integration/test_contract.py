"""The engine-truth contract on the lab: the same scenarios as
tests/unit/test_contract_fake.py, against the real engine. A difference
between the two means ``FakeEngine`` is not to be trusted there."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.contract.scenarios import SCENARIOS, Scenario, run
from zdd_swarm import DockerEngine, UpdateConfig

from .support import create_service, kill_one_task

pytestmark = [pytest.mark.integration, pytest.mark.core]


class LabHarness:
    def __init__(self, lab: Any, client: Any) -> None:
        self.lab = lab
        self.client = client
        self.engine = DockerEngine(lab.docker_host)

    def image(self, tag: str) -> str:
        return str(self.lab.image(tag))

    def create(self, name: str, tag: str, replicas: int, update_config: UpdateConfig) -> None:
        create_service(self.client, self.lab, name, tag, replicas, update_config)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def kill_task(self, name: str) -> str:
        return kill_one_task(self.lab, self.client, name)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_the_engine_keeps_the_contract(
    lab: Any, docker_client: Any, service_name: str, scenario: Scenario
) -> None:
    harness = LabHarness(lab, docker_client)
    assert run(harness, scenario, service_name) == scenario.expected(harness)
