"""Rollouts on the real lab swarm: the controller against Swarm's own updater."""

from __future__ import annotations

from typing import Any

import pytest

from zdd_swarm import (
    HttpGate,
    Outcome,
    RollbackConfig,
    ServiceChange,
    UpdateConfig,
    events,
)
from zdd_swarm.model import canonical
from zdd_swarm.spec import diff_specs

from .support import cleanup_objects, controller, create_service, images_running, rich_spec_kwargs

pytestmark = pytest.mark.integration


@pytest.mark.core
@pytest.mark.parametrize("order", ["stop-first", "start-first"])
@pytest.mark.parametrize("parallelism", [1, 2])
def test_good_rollout_completes(
    lab: Any, docker_client: Any, service_name: str, engine: Any, order: str, parallelism: int
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=4)
    seen: list[Any] = []
    config = UpdateConfig(parallelism=parallelism, order=order, monitor="2s")
    result = controller(engine, [seen.append]).update(
        service_name, ServiceChange(image=lab.image("v2"), update_config=config)
    )
    assert result.outcome is Outcome.COMPLETED, result.summary()
    assert images_running(docker_client, service_name) == {lab.image("v2")}
    assert len(result.batches) == 4 // parallelism
    assert sum(len(b.tasks) for b in result.batches) == 4
    assert len({t.node for b in result.batches for t in b.tasks}) > 1
    assert sum(isinstance(e, events.TaskRunning) for e in seen) == 4


@pytest.mark.core
def test_crashing_image_is_rolled_back(
    lab: Any, docker_client: Any, service_name: str, engine: Any
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=4)
    before = engine.inspect_service(service_name).spec
    result = controller(engine).update(service_name, ServiceChange(image=lab.image("crash")))
    assert result.outcome is Outcome.ROLLED_BACK, result.summary()
    assert result.exit_code == 1
    assert result.code in ("task_failed", "engine_paused")
    assert "exit" in result.reason.message
    assert canonical(engine.inspect_service(service_name).spec) == canonical(before)
    assert images_running(docker_client, service_name) == {lab.image("v1")}


@pytest.mark.core
def test_never_healthy_image_is_rolled_back(
    lab: Any, docker_client: Any, service_name: str, engine: Any
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=3)
    result = controller(engine, task_deadline="20s").update(
        service_name, ServiceChange(image=lab.image("unhealthy"))
    )
    assert result.outcome is Outcome.ROLLED_BACK, result.summary()
    assert result.code in ("task_deadline", "task_failed", "engine_paused")
    assert images_running(docker_client, service_name) == {lab.image("v1")}


def test_task_pending_forever_hits_task_deadline(
    lab: Any, docker_client: Any, service_name: str, engine: Any
) -> None:
    # a stop-first rollback would wait up to a minute for the never-scheduled
    # task to stop (swarmkit's defaultOldTaskTimeout): start-first does not
    create_service(
        docker_client,
        lab,
        service_name,
        "v1",
        replicas=2,
        rollback_config=RollbackConfig(order="start-first").to_api(),
    )

    def impossible(spec: dict[str, Any]) -> None:
        spec["TaskTemplate"].setdefault("Placement", {})["Constraints"] = [
            "node.labels.zdd-nowhere==true"
        ]

    result = controller(engine, task_deadline="15s").update(
        service_name, ServiceChange(image=lab.image("v2"), patch=impossible)
    )
    assert result.outcome is Outcome.ROLLED_BACK, result.summary()
    assert result.code == "task_deadline"
    assert result.duration_s < 60
    assert images_running(docker_client, service_name) == {lab.image("v1")}


def test_failing_http_gate_rolls_back(
    lab: Any, docker_client: Any, service_name: str, engine: Any, failing_endpoint: str
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=2)
    result = controller(engine, gates=[HttpGate(failing_endpoint)]).update(
        service_name, ServiceChange(image=lab.image("v2"))
    )
    assert result.outcome is Outcome.ROLLED_BACK, result.summary()
    assert result.code == "gate_failed" and "HTTP 503" in result.reason.message
    assert images_running(docker_client, service_name) == {lab.image("v1")}


def test_pause_leaves_the_service_half_done(
    lab: Any, docker_client: Any, service_name: str, engine: Any
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=4)
    result = controller(engine, failure_action="pause").update(
        service_name, ServiceChange(image=lab.image("crash"))
    )
    assert result.outcome is Outcome.PAUSED, result.summary()
    assert result.placement
    assert engine.inspect_service(service_name).image == lab.image("crash")


def test_continue_reports_and_ends_failed(
    lab: Any, docker_client: Any, service_name: str, engine: Any
) -> None:
    create_service(
        docker_client,
        lab,
        service_name,
        "v1",
        replicas=2,
        update_config=UpdateConfig(failure_action="continue", monitor="2s"),
    )
    seen: list[Any] = []
    result = controller(engine, [seen.append], failure_action="continue", timeout="40s").update(
        service_name, ServiceChange(image=lab.image("crash"))
    )
    assert result.outcome is Outcome.FAILED, result.summary()
    assert any(isinstance(e, events.ThresholdCrossed) for e in seen)
    assert not any(isinstance(e, events.RollbackStarted) for e in seen)


@pytest.mark.core
def test_engine_own_rollback_is_reported_as_rolled_back(
    lab: Any, docker_client: Any, service_name: str, engine: Any
) -> None:
    create_service(
        docker_client,
        lab,
        service_name,
        "v1",
        replicas=3,
        update_config=UpdateConfig(failure_action="rollback", monitor="3s"),
    )
    result = controller(engine, failure_action="continue").update(
        service_name, ServiceChange(image=lab.image("crash"))
    )
    assert result.outcome is Outcome.ROLLED_BACK, result.summary()
    assert result.rollback_by == "engine"
    assert images_running(docker_client, service_name) == {lab.image("v1")}


def test_every_field_survives_update_and_rollback(
    lab: Any, docker_client: Any, service_name: str, engine: Any
) -> None:
    try:
        create_service(
            docker_client,
            lab,
            service_name,
            "v1",
            replicas=2,
            **rich_spec_kwargs(docker_client, service_name),
        )
        before = engine.inspect_service(service_name).spec
        good = controller(engine).update(
            service_name, ServiceChange(image=lab.image("v2"), env_add={"GREETING": "hi"})
        )
        assert good.outcome is Outcome.COMPLETED, good.summary()
        after = engine.inspect_service(service_name).spec
        assert diff_specs(before, after) == [
            "TaskTemplate.ContainerSpec.Env",
            "TaskTemplate.ContainerSpec.Image",
        ]
        bad = controller(engine).update(service_name, ServiceChange(image=lab.image("crash")))
        assert bad.outcome is Outcome.ROLLED_BACK, bad.summary()
        assert canonical(engine.inspect_service(service_name).spec) == canonical(after)
    finally:
        docker_client.api.remove_service(service_name)
        cleanup_objects(docker_client, service_name)


def test_change_by_another_client_is_reported_not_overwritten(
    lab: Any, docker_client: Any, service_name: str, engine: Any
) -> None:
    create_service(
        docker_client,
        lab,
        service_name,
        "v1",
        replicas=4,
        update_config=UpdateConfig(delay="2s", monitor="2s"),
    )
    done = {"raced": False}

    def other_client(event: Any) -> None:
        if isinstance(event, events.TaskRunning) and not done["raced"]:
            done["raced"] = True
            service = docker_client.services.get(service_name)
            spec = docker_client.api.inspect_service(service.id)
            labels = dict(spec["Spec"].get("Labels") or {}, changed_by="someone-else")
            docker_client.api.update_service(
                service.id, spec["Version"]["Index"], labels=labels, fetch_current_spec=True
            )

    result = controller(engine, [other_client]).update(
        service_name, ServiceChange(image=lab.image("v2"))
    )
    assert result.outcome is Outcome.SUPERSEDED, result.summary()
    assert "Labels" in result.reason.message
    assert engine.inspect_service(service_name).spec["Labels"]["changed_by"] == "someone-else"


@pytest.mark.core
def test_attach_with_watch_follows_an_update_started_elsewhere(
    lab: Any, docker_client: Any, service_name: str, engine: Any
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=3)
    service = engine.inspect_service(service_name)
    engine.update_service(service, ServiceChange(image=lab.image("v2")).apply(service.spec))
    result = controller(engine).watch(service_name)
    assert result.outcome is Outcome.COMPLETED, result.summary()
    assert images_running(docker_client, service_name) == {lab.image("v2")}


def test_retrying_a_failed_release_judges_only_its_own_tasks(
    lab: Any, docker_client: Any, service_name: str, engine: Any
) -> None:
    # Swarm keeps the failed tasks of the first attempt; their spec is the
    # same as the retry's, and they must not count against it.
    create_service(docker_client, lab, service_name, "v1", replicas=3)
    first = controller(engine).update(service_name, ServiceChange(image=lab.image("crash")))
    assert first.outcome is Outcome.ROLLED_BACK, first.summary()
    earlier = {t["ID"] for t in docker_client.api.tasks(filters={"service": service_name})}
    again = controller(engine).update(service_name, ServiceChange(image=lab.image("crash")))
    assert again.outcome is Outcome.ROLLED_BACK, again.summary()
    failed = [t.id for b in again.batches for t in b.tasks if t.failure]
    assert failed and not set(failed) & earlier, (failed, earlier)
