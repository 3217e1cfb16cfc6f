"""Zero downtime, proven the way public write-ups prove it: requests through
the service during the rollout, and not one of them fails.

Traffic goes through Swarm's DNS (dnsrr, no routing mesh on these machines):
see tests/integration/load.py. Run alone with ``scripts/test -m load``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from zdd_swarm import (
    Controller,
    DockerEngine,
    Outcome,
    RolloutOptions,
    RolloutResult,
    ServiceChange,
    UpdateConfig,
)

from .load import LoadResult, load
from .support import create_service, images_running

pytestmark = [pytest.mark.integration, pytest.mark.load]

START_FIRST = UpdateConfig(parallelism=2, order="start-first", delay="1s", monitor="3s")


def rollout_under_load(lab: Any, docker_client: Any, service: str, tag: str, seconds: int,
                       task_deadline: str) -> tuple[RolloutResult, LoadResult]:
    """6 replicas of v1 over 3 nodes, load for ``seconds``, rollout to ``tag``
    a few seconds in."""
    create_service(docker_client, lab, service, "v1", replicas=6,
                   update_config=START_FIRST, stop_grace_period=10_000_000_000)
    with load(docker_client, lab, service, seconds=seconds) as traffic:
        time.sleep(4)
        result = Controller(DockerEngine(lab.docker_host),
                            options=RolloutOptions(task_deadline=task_deadline)).update(
            service, ServiceChange(image=lab.image(tag)))
    print(f"\n{tag} rollout under load: {traffic}; rollout {result.summary()}")
    return result, traffic


def test_start_first_rollout_under_load_fails_no_request(lab: Any, docker_client: Any,
                                                         service_name: str) -> None:
    result, traffic = rollout_under_load(lab, docker_client, service_name, "v2", 55, "60s")
    assert result.outcome is Outcome.COMPLETED, result.summary()
    assert images_running(docker_client, service_name) == {lab.image("v2")}
    assert traffic.failed == 0, (str(traffic), traffic.errors)
    assert traffic.sent >= 10_000, str(traffic)


def test_bad_release_rolled_back_under_load_fails_no_request(lab: Any, docker_client: Any,
                                                             service_name: str) -> None:
    result, traffic = rollout_under_load(lab, docker_client, service_name, "unhealthy", 35,
                                         "30s")
    assert result.outcome is Outcome.ROLLED_BACK, result.summary()
    assert images_running(docker_client, service_name) == {lab.image("v1")}
    assert traffic.failed == 0, (str(traffic), traffic.errors)
    assert traffic.sent >= 4_000, str(traffic)
