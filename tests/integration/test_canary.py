"""A canary on the lab swarm: Swarm's own updater held at each step by a
long delay, released by a change of UpdateConfig alone, and the original
spec restored on abort (see zdd_swarm/canary/driver.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from zdd_swarm.canary.analysis import Metric, QueryContext
from zdd_swarm.canary.driver import Canary, CanaryOutcome
from zdd_swarm.canary.spec import CanarySpec
from zdd_swarm.canary.steps import parse_steps
from zdd_swarm.config import UpdateConfig
from zdd_swarm.engine import DockerEngine

from .support import create_service, running_tasks

pytestmark = pytest.mark.integration

CONFIG = UpdateConfig(parallelism=2, monitor="2s", order="start-first")


def tags(client: Any, name: str) -> list[str]:
    return sorted(
        t["Spec"]["ContainerSpec"]["Image"].rpartition(":")[2] for t in running_tasks(client, name)
    )


class Seen:
    """A provider that records which releases run when it is asked."""

    def __init__(self, client: Any, name: str, value: float = 0.0) -> None:
        self.client, self.name, self.value = client, name, value
        self.tags: list[list[str]] = []

    def measure(self, context: QueryContext) -> Any:
        self.tags.append(tags(self.client, self.name))
        return [self.value]


def test_a_good_release_is_held_at_each_step_then_completes(
    lab: Any, docker_client: Any, service_name: str, engine: DockerEngine
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=4, update_config=CONFIG)
    before = docker_client.api.inspect_service(service_name)["Spec"]
    seen = Seen(docker_client, service_name)
    analyses = {"seen": (Metric("seen", seen, success_condition="result[0] < 1"),)}
    steps = parse_steps(["25%", "pause=8s", "analysis=seen", "50%", "analysis=seen", "100%"])
    canary = Canary(engine, CanarySpec(steps, analyses), poll_interval=0.5, step_timeout=120)

    result = canary.run(service_name, lab.image("v2"))

    assert result.outcome is CanaryOutcome.COMPLETED, result.reason
    # before anything changed; after 25 % and an 8 s pause: still one task; then two
    assert [t.count("v2") for t in seen.tags] == [0, 1, 2]
    assert [len(t) for t in seen.tags] == [4, 4, 4]
    assert tags(docker_client, service_name) == ["v2"] * 4
    after = docker_client.api.inspect_service(service_name)
    assert after["Spec"]["UpdateConfig"] == before["UpdateConfig"]
    assert after["UpdateStatus"]["State"] == "completed"


def test_a_failed_analysis_puts_every_task_back_on_the_original_spec(
    lab: Any, docker_client: Any, service_name: str, engine: DockerEngine
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=4, update_config=CONFIG)
    before = docker_client.api.inspect_service(service_name)["Spec"]
    seen = Seen(docker_client, service_name, value=0.2)
    errors = Metric(
        "error-ratio", seen, success_condition="result[0] < 0.05", interval="1s", count=2
    )
    steps = parse_steps(["25%", "analysis=errors", "100%"], {"errors"})
    # check_metrics measures once before anything changes; its value is not judged
    canary = Canary(
        engine, CanarySpec(steps, {"errors": (errors,)}), poll_interval=0.5, step_timeout=120
    )
    started = time.monotonic()

    result = canary.run(service_name, lab.image("v2"))

    assert result.outcome is CanaryOutcome.ABORTED, result.reason
    assert result.failed_step == 1
    assert "value [0.2]" in result.reason
    assert seen.tags[1].count("v2") == 1  # the analysis ran on the canary
    assert tags(docker_client, service_name) == ["v1"] * 4
    spec = docker_client.api.inspect_service(service_name)["Spec"]
    assert (
        spec["TaskTemplate"]["ContainerSpec"]["Image"]
        == before["TaskTemplate"]["ContainerSpec"]["Image"]
    )
    assert spec["UpdateConfig"] == before["UpdateConfig"]
    assert time.monotonic() - started < 120
