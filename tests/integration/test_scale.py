"""Load on the controller: ten rollouts followed at once by one process, and
a 60-replica service. No failure may be missed; the Engine API rate stays
bounded (at most 2 requests per second per rollout followed)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from docker.errors import NotFound
from docker.types import Healthcheck

from zdd_swarm import (
    Controller,
    DockerEngine,
    Outcome,
    RolloutOptions,
    RolloutResult,
    ServiceChange,
    UpdateConfig,
)

from .support import SECOND, create_service, images_running, wait_running

pytestmark = [pytest.mark.integration, pytest.mark.serial]

QUICK = UpdateConfig(parallelism=1, monitor="2s")


@pytest.fixture
def ten_services(lab: Any, docker_client: Any) -> Iterator[list[str]]:
    names = [f"t-ten-{uuid.uuid4().hex[:6]}-{i}" for i in range(10)]
    try:
        for name in names:
            create_service(
                docker_client, lab, name, "v1", replicas=2, update_config=QUICK, wait=False
            )
        for name in names:
            wait_running(docker_client, name, 2, timeout=120)
        yield names
    finally:
        for name in names:
            with contextlib.suppress(NotFound):
                docker_client.api.remove_service(name)


def test_ten_rollouts_at_once_by_one_process(
    lab: Any, docker_client: Any, ten_services: list[str]
) -> None:
    engine = DockerEngine(lab.docker_host)  # one engine, one process, ten threads
    controller = Controller(engine, options=RolloutOptions(task_deadline="60s"))
    bad = set(ten_services[7:])
    plan = {name: lab.image("crash" if name in bad else "v2") for name in ten_services}
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=10) as pool:
        futures = {
            name: pool.submit(controller.update, name, ServiceChange(image=image))
            for name, image in plan.items()
        }
        results: dict[str, RolloutResult] = {n: f.result(timeout=400) for n, f in futures.items()}
    elapsed = time.monotonic() - start
    for name, result in results.items():
        expected = Outcome.ROLLED_BACK if name in bad else Outcome.COMPLETED
        assert result.outcome is expected, (name, result.summary())
        assert images_running(docker_client, name) == {lab.image("v1" if name in bad else "v2")}
    rate = engine.requests / elapsed / len(plan)
    print(
        f"\n10 rollouts at once: {elapsed:.0f}s, {engine.requests} requests, "
        f"{rate:.2f} per second per rollout"
    )
    assert rate <= 2.0, (engine.requests, elapsed)


def test_sixty_replicas_at_parallelism_ten(lab: Any, docker_client: Any, service_name: str) -> None:
    # the images' healthcheck runs every second: 60 of them at once would
    # load these 2 cores more than the rollout itself, so check every 5 s
    create_service(
        docker_client,
        lab,
        service_name,
        "v1",
        replicas=60,
        update_config=UpdateConfig(parallelism=10, order="start-first", monitor="2s"),
        stop_grace_period=1_000_000_000,
        healthcheck=Healthcheck(
            test=["CMD", "/bin/sh", "/health.sh"],
            interval=5 * SECOND,
            timeout=5 * SECOND,
            retries=3,
            start_period=10 * SECOND,
        ),
        wait=False,
    )
    wait_running(docker_client, service_name, 60, timeout=240)
    engine = DockerEngine(lab.docker_host)
    start = time.monotonic()
    result = Controller(engine, options=RolloutOptions(task_deadline="90s")).update(
        service_name, ServiceChange(image=lab.image("v2"))
    )
    elapsed = time.monotonic() - start
    assert result.outcome is Outcome.COMPLETED, result.summary()
    assert sum(len(b.tasks) for b in result.batches) == 60
    assert len(result.batches) == 6
    wait_running(docker_client, service_name, 60, timeout=120)
    assert images_running(docker_client, service_name) == {lab.image("v2")}
    print(
        f"\n60 replicas: {elapsed:.0f}s, {engine.requests} requests "
        f"({engine.requests / elapsed:.2f}/s)"
    )
    assert engine.requests / elapsed <= 2.0
