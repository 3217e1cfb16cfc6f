"""Engine truth on the lab: the update's scope and verdicts as Swarm's own
updater has them (swarmkit ``manager/orchestrator/update/updater.go``,
``orchestrator/task.go``, ``controlapi/service.go``)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from docker.types import ServiceMode

from zdd_swarm import DockerEngine, Outcome, ServiceChange, UpdateConfig
from zdd_swarm.errors import UnsupportedServiceMode, UpdatePaused
from zdd_swarm.model import UpdateState, canonical

from .support import controller, create_service, images_running, kill_one_task, running_tasks

pytestmark = pytest.mark.integration


def wait_state(engine: DockerEngine, name: str, *states: UpdateState, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.inspect_service(name).state in states:
            return
        time.sleep(0.5)
    raise AssertionError(f"{name}: not {states} after {timeout}s")


@pytest.mark.core
def test_watch_after_completion_never_rolls_back_a_restarted_task(
    lab: Any, docker_client: Any, service_name: str, engine: DockerEngine
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=3)
    done = controller(engine).update(service_name, ServiceChange(image=lab.image("v2")))
    assert done.outcome is Outcome.COMPLETED, done.summary()
    spec = canonical(engine.inspect_service(service_name).spec)
    killed = kill_one_task(lab, docker_client, service_name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and killed in {
        t["ID"] for t in running_tasks(docker_client, service_name)
    }:
        time.sleep(0.2)
    result = controller(engine).watch(service_name)
    assert (result.outcome, result.code) == (Outcome.COMPLETED, "already_completed")
    assert canonical(engine.inspect_service(service_name).spec) == spec
    assert engine.inspect_service(service_name).state is UpdateState.COMPLETED


def test_zero_replicas_complete_in_seconds(
    lab: Any, docker_client: Any, service_name: str, engine: DockerEngine
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=0)
    result = controller(engine).update(service_name, ServiceChange(image=lab.image("v2")))
    assert (result.outcome, result.code) == (Outcome.COMPLETED, "nothing_to_replace"), (
        result.summary()
    )
    assert result.duration_s < 30
    service = engine.inspect_service(service_name)
    assert service.update_status is None and service.image == lab.image("v2")


def test_placement_only_change_the_nodes_satisfy_replaces_nothing(
    lab: Any, docker_client: Any, service_name: str, engine: DockerEngine
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=3)
    ids = {t["ID"] for t in running_tasks(docker_client, service_name)}

    def place(spec: dict[str, Any]) -> None:
        spec["TaskTemplate"].setdefault("Placement", {})["Constraints"] = [
            "node.platform.os==linux"
        ]

    result = controller(engine).update(service_name, ServiceChange(patch=place))
    assert (result.outcome, result.code) == (Outcome.COMPLETED, "nothing_to_replace"), (
        result.summary()
    )
    assert result.duration_s < 30
    assert {t["ID"] for t in running_tasks(docker_client, service_name)} == ids


def test_a_scale_with_the_update_counts_the_new_replicas(
    lab: Any, docker_client: Any, service_name: str, engine: DockerEngine
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=2)

    def three(spec: dict[str, Any]) -> None:
        spec["Mode"] = {"Replicated": {"Replicas": 3}}

    result = controller(engine).update(
        service_name, ServiceChange(image=lab.image("v2"), patch=three)
    )
    assert result.outcome is Outcome.COMPLETED and result.total == 3, result.summary()
    assert len(running_tasks(docker_client, service_name)) == 3
    assert images_running(docker_client, service_name) == {lab.image("v2")}


def test_a_monitor_longer_than_the_progress_deadline_completes(
    lab: Any, docker_client: Any, service_name: str, engine: DockerEngine
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=2)
    config = UpdateConfig(parallelism=2, monitor="30s")
    result = controller(engine, progress_deadline="10s").update(
        service_name, ServiceChange(image=lab.image("v2"), update_config=config)
    )
    assert result.outcome is Outcome.COMPLETED, result.summary()
    assert result.duration_s > 30


def test_a_replicated_job_is_refused_before_anything_is_sent(
    lab: Any, docker_client: Any, service_name: str, engine: DockerEngine
) -> None:
    docker_client.services.create(
        lab.image("v1"),
        name=service_name,
        command=["true"],
        mode=ServiceMode("replicated-job", concurrency=1, replicas=1),
    )
    version = engine.inspect_service(service_name).version
    with pytest.raises(UnsupportedServiceMode, match="replicated-job"):
        controller(engine).update(service_name, ServiceChange(image=lab.image("v2")))
    assert engine.inspect_service(service_name).version == version


@pytest.mark.core
def test_the_same_spec_on_a_paused_update_is_refused(
    lab: Any, docker_client: Any, service_name: str, engine: DockerEngine
) -> None:
    create_service(
        docker_client,
        lab,
        service_name,
        "v1",
        replicas=3,
        update_config=UpdateConfig(failure_action="pause", monitor="5s"),
    )
    service = engine.inspect_service(service_name)
    engine.update_service(service, ServiceChange(image=lab.image("crash")).apply(service.spec))
    wait_state(engine, service_name, UpdateState.PAUSED)
    paused = engine.inspect_service(service_name)
    with pytest.raises(UpdatePaused, match="half way"):
        controller(engine).update(service_name, ServiceChange(image=lab.image("crash")))
    assert engine.inspect_service(service_name).version == paused.version
    result = controller(engine, failure_action="pause").watch(service_name)
    assert (result.outcome, result.code) == (Outcome.PAUSED, "engine_paused"), result.summary()
