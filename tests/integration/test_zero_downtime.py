"""Zero downtime, proven the way public write-ups prove it: requests through
the service during the rollout, and not one of them fails.

Traffic goes through Swarm's DNS (dnsrr, no routing mesh on these machines):
see tests/integration/load.py. Run alone with ``scripts/test -m load``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from zdd_swarm import (
    Controller,
    DockerEngine,
    Outcome,
    RollbackConfig,
    RolloutOptions,
    RolloutResult,
    ServiceChange,
    UpdateConfig,
    events,
)

from .load import LoadResult, load
from .support import create_service, images_running

pytestmark = [pytest.mark.integration, pytest.mark.load, pytest.mark.serial]

START_FIRST = UpdateConfig(parallelism=2, order="start-first", delay="1s", monitor="3s")


def rollout_under_load(
    lab: Any,
    docker_client: Any,
    service: str,
    tag: str,
    seconds: int,
    task_deadline: str,
    *,
    start: str = "v1",
    update_config: UpdateConfig = START_FIRST,
    env: tuple[str, ...] = (),
    hooks: Sequence[Any] = (),
    request_timeout: int = 0,
) -> tuple[RolloutResult, LoadResult]:
    """6 replicas of ``start`` over 3 nodes, load for ``seconds``, rollout to
    ``tag`` a few seconds in."""
    # old tasks serve 8 s after SIGTERM: Swarm takes a task out of its DNS
    # 2 s before the signal, and the other nodes learn it by gossip, which
    # lags on a loaded machine
    create_service(
        docker_client,
        lab,
        service,
        start,
        replicas=6,
        update_config=update_config,
        stop_grace_period=15_000_000_000,
        env=["APP_DRAIN_SECONDS=8"],
        rollback_config=RollbackConfig(parallelism=2, order="start-first", monitor="3s").to_api(),
    )
    with load(
        docker_client, lab, service, seconds=seconds, request_timeout=request_timeout
    ) as traffic:
        time.sleep(4)
        result = Controller(
            DockerEngine(lab.docker_host),
            hooks=hooks,
            options=RolloutOptions(task_deadline=task_deadline),
        ).update(service, ServiceChange(image=lab.image(tag), env_add=env))
    print(f"\n{start} -> {tag} rollout under load: {traffic}; rollout {result.summary()}")
    return result, traffic


def failed_requests(docker_client: Any, service: str, traffic: LoadResult) -> str:
    """The failed requests, with the tasks that had the addresses they went to."""
    ips = {line.split()[2] for line in traffic.errors if len(line.split()) > 2}
    owners = []
    for task in docker_client.api.tasks(filters={"service": service}):
        for attachment in task.get("NetworksAttachments") or []:
            for address in attachment.get("Addresses") or []:
                if address.split("/")[0] in ips:
                    status = task["Status"]
                    owners.append(
                        f"{address} task {task['ID'][:12]} "
                        f"{task['Spec']['ContainerSpec']['Image']} "
                        f"{status['State']} (desired {task['DesiredState']}) "
                        f"at {status['Timestamp']}, created {task['CreatedAt']}"
                    )
    return f"{traffic}; errors: {traffic.errors[:5]}; tasks: {owners}"


def test_start_first_rollout_under_load_fails_no_request(
    lab: Any, docker_client: Any, service_name: str
) -> None:
    result, traffic = rollout_under_load(lab, docker_client, service_name, "v2", 55, "60s")
    assert result.outcome is Outcome.COMPLETED, result.summary()
    assert images_running(docker_client, service_name) == {lab.image("v2")}
    assert traffic.failed == 0, failed_requests(docker_client, service_name, traffic)
    assert traffic.sent >= 10_000, str(traffic)


def test_bad_release_rolled_back_under_load_fails_no_request(
    lab: Any, docker_client: Any, service_name: str
) -> None:
    result, traffic = rollout_under_load(lab, docker_client, service_name, "unhealthy", 35, "30s")
    assert result.outcome is Outcome.ROLLED_BACK, result.summary()
    assert images_running(docker_client, service_name) == {lab.image("v1")}
    assert traffic.failed == 0, failed_requests(docker_client, service_name, traffic)
    assert traffic.sent >= 4_000, str(traffic)


def test_worker_killed_mid_rollout_under_load_errors_and_recovery(
    lab: Any, docker_client: Any, service_name: str
) -> None:
    """Scenario 3: a worker's daemon SIGKILLed during the rollout. Requests
    to its tasks fail until the manager marks the node down and Swarm's DNS
    drops them; the figures are reported, and the service must recover."""
    killed_at: list[float] = []

    def kill(event: events.Event) -> None:
        if isinstance(event, events.TaskRunning) and not killed_at:
            killed_at.append(time.time())
            threading.Thread(target=lab.kill_node, args=(3,), daemon=True).start()

    try:
        # a request to a task on the lost node would wait for TCP's own timeout
        result, traffic = rollout_under_load(
            lab, docker_client, service_name, "v2", 55, "90s", hooks=[kill], request_timeout=3
        )
    finally:
        lab.start_node(3)
    assert killed_at, "the rollout never had a running task"
    assert result.outcome in (Outcome.COMPLETED, Outcome.ROLLED_BACK), result.summary()
    after = [t - killed_at[0] for t in traffic.error_times if t >= killed_at[0] - 1]
    recovery = max(after) if after else 0.0
    print(
        f"worker killed under load: {traffic.failed} of {traffic.sent} requests failed "
        f"({traffic.connection_errors} connection errors, {traffic.non2xx} non-2xx); last "
        f"error {recovery:.0f}s after the kill; examples: {traffic.errors[:3]}"
    )
    assert traffic.sent >= 5_000, str(traffic)
    # recovered: the last errors are well before the load ended
    assert recovery < 35, (recovery, traffic.errors)
    assert len(after) == len(traffic.error_times), "requests failed before the kill"


@pytest.mark.parametrize(
    "case", ["slow starter without healthcheck, start-first", "abrupt exit on SIGTERM, stop-first"]
)
def test_what_the_settings_buy(lab: Any, docker_client: Any, service_name: str, case: str) -> None:
    """Scenario 4, for contrast with scenario 1: the same rollout with the
    app's safety nets removed. A release that listens 8 s after it starts and
    has no healthcheck is in Swarm's DNS (RUNNING) before it serves: requests
    fail. A release that dies at once on SIGTERM, replaced stop-first, loses
    next to nothing with short requests: the engine takes a task out of the
    service's DNS and load balancing first and sends the stop signal 2 s
    later (moby ``daemon/cluster/executor/container/controller.go``,
    ``Shutdown``, ``defaultGossipConvergeDelay``); only requests still in
    flight then are cut. Both figures are reported."""
    if case.startswith("slow"):
        result, traffic = rollout_under_load(
            lab, docker_client, service_name, "slow-nohc", 30, "60s", env=("APP_SLOW_SECONDS=8",)
        )
    else:
        result, traffic = rollout_under_load(
            lab,
            docker_client,
            service_name,
            "v2",
            30,
            "60s",
            start="abrupt",
            update_config=UpdateConfig(parallelism=2, order="stop-first", delay="1s", monitor="3s"),
        )
    print(
        f"{case}: {traffic.failed} of {traffic.sent} requests failed "
        f"({100 * traffic.failed / max(traffic.sent, 1):.1f} %); examples: "
        f"{traffic.errors[:3]}"
    )
    assert result.outcome is Outcome.COMPLETED, result.summary()
    assert traffic.sent >= 3_000, str(traffic)
    if case.startswith("slow"):
        # what a healthcheck prevents: requests sent to a task that does not listen yet
        assert traffic.failed > 0, str(traffic)
