"""Zero downtime, proven the way public write-ups prove it: requests through
the service during the rollout, and not one of them fails.

Traffic goes through Swarm's DNS (dnsrr, no routing mesh on these machines):
see tests/integration/load.py. Run alone with ``scripts/test -m load``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from zdd_swarm import Controller, DockerEngine, Outcome, RolloutOptions, ServiceChange, UpdateConfig

from .load import load
from .support import create_service, images_running

pytestmark = [pytest.mark.integration, pytest.mark.load]

START_FIRST = UpdateConfig(parallelism=2, order="start-first", delay="1s", monitor="3s")


def test_start_first_rollout_under_load_fails_no_request(lab: Any, docker_client: Any,
                                                         service_name: str) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=6,
                   update_config=START_FIRST, stop_grace_period=10_000_000_000)
    with load(docker_client, lab, service_name, seconds=55) as traffic:
        time.sleep(5)
        result = Controller(DockerEngine(lab.docker_host),
                            options=RolloutOptions(task_deadline="60s")).update(
            service_name, ServiceChange(image=lab.image("v2")))
    print(f"\nstart-first rollout under load: {traffic}; rollout {result.summary()}")
    assert result.outcome is Outcome.COMPLETED, result.summary()
    assert images_running(docker_client, service_name) == {lab.image("v2")}
    assert traffic.failed == 0, (str(traffic), traffic.errors)
    assert traffic.sent >= 10_000, str(traffic)


def test_bad_release_rolled_back_under_load_fails_no_request(lab: Any, docker_client: Any,
                                                             service_name: str) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=6,
                   update_config=START_FIRST, stop_grace_period=10_000_000_000)
    with load(docker_client, lab, service_name, seconds=35) as traffic:
        time.sleep(3)
        result = Controller(DockerEngine(lab.docker_host),
                            options=RolloutOptions(task_deadline="30s")).update(
            service_name, ServiceChange(image=lab.image("unhealthy")))
    print(f"\nbad release rolled back under load: {traffic}; rollout {result.summary()}")
    assert result.outcome is Outcome.ROLLED_BACK, result.summary()
    assert images_running(docker_client, service_name) == {lab.image("v1")}
    assert traffic.failed == 0, (str(traffic), traffic.errors)
    assert traffic.sent >= 4_000, str(traffic)
