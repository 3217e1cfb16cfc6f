"""Node faults in the middle of a rollout: a worker lost, the manager
restarted. Each ends in a defined outcome with at most one update and one
rollback sent."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest

from zdd_swarm import (
    Controller,
    DockerEngine,
    Outcome,
    RolloutOptions,
    ServiceChange,
    UpdateConfig,
    events,
)
from zdd_swarm.model import ServiceView

from .support import create_service, wait_running

pytestmark = [pytest.mark.integration, pytest.mark.serial]

SLOW = UpdateConfig(parallelism=1, delay="2s", monitor="2s", max_failure_ratio=0.5)


class CountingEngine(DockerEngine):
    """Records every update request it sends."""

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.sent: list[str] = []

    def update_service(
        self, service: ServiceView, spec: Mapping[str, Any], *, rollback: bool = False
    ) -> list[str]:
        self.sent.append("rollback" if rollback else "update")
        return super().update_service(service, spec, rollback=rollback)


def run_with_fault(lab: Any, service_name: str, fault: Any) -> tuple[Any, CountingEngine]:
    engine = CountingEngine(lab.docker_host)
    fired = threading.Event()

    def hook(event: events.Event) -> None:
        if isinstance(event, events.TaskRunning) and not fired.is_set():
            fired.set()
            threading.Thread(target=fault, daemon=True).start()

    controller = Controller(
        engine, hooks=[hook], options=RolloutOptions(task_deadline="90s", engine_outage="120s")
    )
    result = controller.update(service_name, ServiceChange(image=lab.image("v2")))
    assert fired.is_set()
    return result, engine


def test_worker_lost_mid_rollout(lab: Any, docker_client: Any, service_name: str) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=6, update_config=SLOW)
    try:
        result, engine = run_with_fault(lab, service_name, lambda: lab.kill_node(3))
    finally:
        lab.start_node(3)
    assert result.outcome in (Outcome.COMPLETED, Outcome.ROLLED_BACK), result.summary()
    assert engine.sent.count("update") == 1 and engine.sent.count("rollback") <= 1
    # a new task caught on the lost node is named with it, and not waited for
    # (Swarm's updater would wait until the node comes back)
    failed = [t for b in result.batches for t in b.tasks if t.failure]
    assert all(t.node == lab.node_name(3) and t.failure == "node_down" for t in failed), failed
    if result.outcome is Outcome.ROLLED_BACK:
        assert result.code == "node_down" and lab.node_name(3) in result.reason.message
    assert result.duration_s < 150, result.summary()
    wait_running(docker_client, service_name, 6)


def test_manager_restarted_mid_rollout(lab: Any, docker_client: Any, service_name: str) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=4, update_config=SLOW)

    def restart_manager() -> None:
        import time

        lab.kill_node(1)
        time.sleep(10)
        lab.start_node(1)

    result, engine = run_with_fault(lab, service_name, restart_manager)
    assert result.outcome in (Outcome.COMPLETED, Outcome.ROLLED_BACK), result.summary()
    assert engine.sent.count("update") == 1 and engine.sent.count("rollback") <= 1
    wait_running(docker_client, service_name, 4, timeout=120)
