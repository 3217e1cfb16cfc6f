"""Faults of the cluster around a rollout: the registry gone, a node
drained, the rollback itself unable to start, the service removed. Each
ends in a stated outcome; the spec is compared field by field afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker.errors import NotFound

from zdd_swarm import Controller, DockerEngine, Outcome, RolloutOptions, ServiceChange, events
from zdd_swarm.model import canonical

from .support import create_service, images_running, running_tasks, wait_running

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def push_copy(lab: Any, docker_client: Any, tag: str) -> str:
    """Push the lab image ``tag`` again under a tag no node has pulled yet."""
    fresh = f"{tag}-{uuid.uuid4().hex[:6]}"
    repository = lab.image(tag).rsplit(":", 1)[0]
    docker_client.images.get(lab.image(tag)).tag(repository, fresh)
    for line in docker_client.images.push(repository, fresh, stream=True, decode=True):
        assert "error" not in line, line
    docker_client.images.remove(lab.image(fresh))  # the manager must pull it too
    return lab.image(fresh)


def untag_everywhere(lab: Any, image: str) -> None:
    """Remove a tag from every node (the image's other tags keep its layers)."""
    for i in range(1, 4):
        client = lab.client(i)
        try:
            with contextlib.suppress(NotFound):
                client.images.remove(image)
        finally:
            client.close()


@contextlib.contextmanager
def registry_down(lab: Any) -> Iterator[None]:
    lab.stop_registry()
    try:
        yield
    finally:
        lab.start_registry()


def spec_of(docker_client: Any, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(canonical(docker_client.api.inspect_service(name)["Spec"]))
    return spec


@pytest.mark.serial
def test_registry_down_mid_rollout_is_rolled_back_with_the_engine_error(
    lab: Any, docker_client: Any, service_name: str
) -> None:
    release = push_copy(lab, docker_client, "v2")
    create_service(docker_client, lab, service_name, "v1", replicas=3)
    before = spec_of(docker_client, service_name)
    with registry_down(lab):
        result = Controller(
            DockerEngine(lab.docker_host), options=RolloutOptions(task_deadline="40s")
        ).update(service_name, ServiceChange(image=release))
        assert result.outcome is Outcome.ROLLED_BACK, result.summary()
        # the old image is on the nodes: the rollback needs no registry
        wait_running(docker_client, service_name, 3)
    errors = " ".join(t.error for b in result.batches for t in b.tasks if t.error)
    assert "No such image" in errors or "connection refused" in errors, errors
    assert result.duration_s < 40 + 60, result.summary()
    assert images_running(docker_client, service_name) == {lab.image("v1")}
    assert spec_of(docker_client, service_name) == before


@pytest.mark.serial
def test_rollback_that_cannot_start_is_rollback_failed_exit_4(
    lab: Any, docker_client: Any, service_name: str
) -> None:
    # the running release's image is in the registry only under this tag
    old = push_copy(lab, docker_client, "v1")
    create_service(docker_client, lab, service_name, old.rsplit(":", 1)[1], replicas=2)
    with registry_down(lab):
        untag_everywhere(lab, old)  # and now nowhere: the rollback cannot start
        env = dict(os.environ, DOCKER_HOST=lab.docker_host)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "zdd_swarm",
                "update",
                service_name,
                "--image",
                lab.image("crash"),
                "--task-deadline",
                "30s",
                "--rollback-timeout",
                "90s",
                "--json",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 4, (proc.stdout, proc.stderr[-3000:])
    data = json.loads(proc.stdout)
    assert data["outcome"] == "rollback_failed"
    assert data["image_before"] == old and data["image_after"] == old
    rollback_errors = [
        t["error"]
        for b in data["batches"]
        if b["phase"] == "rollback"
        for t in b["tasks"]
        if t["error"]
    ]
    assert rollback_errors, data["batches"]
    assert "rolled back" not in data["reason"] or "fail" in data["reason"], data["reason"]


@pytest.mark.serial
def test_node_drained_mid_rollout_ends_stated_on_the_other_nodes(
    lab: Any, docker_client: Any, service_name: str
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=6)
    before = spec_of(docker_client, service_name)
    node = next(
        n
        for n in docker_client.nodes.list()
        if n.attrs["Description"]["Hostname"] == lab.node_name(3)
    )
    drained = threading.Event()

    def drain(event: events.Event) -> None:
        if isinstance(event, events.TaskRunning) and not drained.is_set():
            drained.set()
            node.reload()
            node.update({**node.attrs["Spec"], "Availability": "drain"})

    try:
        result = Controller(DockerEngine(lab.docker_host), hooks=[drain]).update(
            service_name, ServiceChange(image=lab.image("v2"))
        )
        assert drained.is_set()
        # Swarm's updater counts a new task ended within monitor as a failure,
        # and the drain ends the new tasks on that node: the engine pauses
        # the update (its failure_action) if one of them was in its window,
        # and zdd_swarm then rolls back. Either way: stated, and off the node.
        assert result.outcome in (Outcome.COMPLETED, Outcome.ROLLED_BACK), result.summary()
        if result.outcome is Outcome.ROLLED_BACK:
            assert result.code == "engine_paused", result.summary()
            assert f"drain of node {lab.node_name(3)}" in result.reason.message
        image = lab.image("v2" if result.outcome is Outcome.COMPLETED else "v1")
        wait_running(docker_client, service_name, 6)
        tasks = running_tasks(docker_client, service_name)
        assert node.id not in {t["NodeID"] for t in tasks}
        assert images_running(docker_client, service_name) == {image}
    finally:
        node.reload()
        node.update({**node.attrs["Spec"], "Availability": "active"})
    after = spec_of(docker_client, service_name)
    assert after["TaskTemplate"]["ContainerSpec"].pop("Image") == image
    before["TaskTemplate"]["ContainerSpec"].pop("Image")
    assert after == before


def test_service_removed_while_watched_is_superseded(
    lab: Any, docker_client: Any, service_name: str
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=3)

    def remove(event: events.Event) -> None:
        if isinstance(event, events.TaskRunning):
            with contextlib.suppress(NotFound):
                docker_client.api.remove_service(service_name)

    result = Controller(DockerEngine(lab.docker_host), hooks=[remove]).update(
        service_name, ServiceChange(image=lab.image("v2"))
    )
    assert result.outcome is Outcome.SUPERSEDED, result.summary()
    assert result.code == "service_removed"
    assert result.exit_code == 3
