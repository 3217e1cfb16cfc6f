"""The engine's service events on the lab: they wake the watch loop when the
engine changes the service (its update status included)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from zdd_swarm import DockerEngine, Outcome, ServiceChange

from .support import controller, create_service

pytestmark = [pytest.mark.integration, pytest.mark.core]


def test_a_service_change_wakes_the_waiter_and_close_ends_the_stream(
    lab: Any, docker_client: Any, service_name: str, engine: DockerEngine
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=1)
    service = engine.inspect_service(service_name)
    events = engine.service_events(service.id)
    assert events is not None
    time.sleep(1.0)  # the stream is open
    events.wait(0)  # nothing before the change counts
    engine.update_service(service, ServiceChange(labels_add={"k": "v"}).apply(service.spec))
    start = time.monotonic()
    assert events.wait(10.0) is True
    assert time.monotonic() - start < 5.0
    events.close()
    deadline = time.monotonic() + 5
    while events.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not events.alive


def test_an_engine_pause_is_acted_on_at_once(
    lab: Any, docker_client: Any, service_name: str, engine: DockerEngine
) -> None:
    # Swarm pauses the update on the crash (its default failure action); the
    # pause is a service event, so the rollback is asked for without waiting
    # out a poll of the service.
    create_service(docker_client, lab, service_name, "v1", replicas=2)
    seen: list[Any] = []
    result = controller(engine, [seen.append]).update(
        service_name, ServiceChange(image=lab.image("crash"))
    )
    assert result.outcome is Outcome.ROLLED_BACK, result.summary()
    assert any(e.name == "rollback_started" for e in seen)
