"""What each engine of the lab says, in the words the controller reads.

These run in CI's core set on every engine (28.5, 20.10 and a mixed swarm):
the API version each node negotiates, and the update states and messages,
``PreviousSpec`` and task errors of an engine rollback (docs/concepts.md,
"Engines").
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from docker.types import RollbackConfig

from zdd_swarm import ServiceChange, UpdateConfig

from .support import SECOND, create_service

pytestmark = [pytest.mark.integration, pytest.mark.core]

#: API version of each engine the lab fetches by name
API = {"28.5": "1.51", "26.1": "1.45", "20.10": "1.41"}


def test_each_node_speaks_its_engines_api_version_and_the_adapter_negotiates_it(
    lab: Any, engine: Any
) -> None:
    for i in range(1, lab.nodes + 1):
        name = lab.node_engine(i)
        versions = lab.engine_version(i)
        assert versions is not None, f"{lab.node_name(i)} does not answer"
        if name in API:
            assert versions[1] == API[name], (lab.node_name(i), name, versions)
    assert engine.info().api_version == lab.engine_version(1)[1]


def test_an_engine_rollback_reads_the_same_on_every_engine(
    lab: Any, docker_client: Any, service_name: str, engine: Any
) -> None:
    create_service(
        docker_client,
        lab,
        service_name,
        "v1",
        replicas=2,
        update_config=UpdateConfig(parallelism=2, monitor="3s", failure_action="rollback"),
        # both slots fail at once; a delay between their rollbacks keeps
        # rollback_started in view for the polls below
        rollback_config=RollbackConfig(parallelism=1, delay=3 * SECOND, monitor=SECOND),
    )
    service = engine.inspect_service(service_name)
    engine.update_service(service, ServiceChange(image=lab.image("crash")).apply(service.spec))
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        data = docker_client.api.inspect_service(service_name)
        status = data.get("UpdateStatus") or {}
        state = (status.get("State", ""), status.get("Message", ""))
        if not seen or seen[-1] != state:
            seen.append(state)
        if state[0] in ("rollback_completed", "rollback_paused", "paused"):
            break
        time.sleep(0.2)
    states = [s for s, _ in seen]
    assert states[-1] == "rollback_completed", seen
    # rollback_started may last less than a poll; when seen, its message is
    # the updater's (swarmkit updater.go, rollbackUpdate)
    if "rollback_started" in states:
        started = seen[states.index("rollback_started")][1]
        assert started.startswith(
            "update rolled back due to failure or early termination of task "
        ), seen
    assert seen[-1][1] == "rollback completed", seen
    # the engine's own rollback clears PreviousSpec (swarmkit updater.go, rollbackUpdate)
    assert "PreviousSpec" not in data
    failed = [
        t["Status"]
        for t in docker_client.api.tasks(filters={"service": service_name})
        if t["Status"]["State"] == "failed"
    ]
    assert failed and all(s["Err"] == "task: non-zero exit (1)" for s in failed), failed
