"""Faults that must still end in a stated outcome (no node is harmed here;
see docs/reliability.md for the whole matrix)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from zdd_swarm import Controller, DockerEngine, Outcome, RolloutOptions, ServiceChange, UpdateConfig

from .support import create_service, images_running

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SLOW = UpdateConfig(parallelism=1, delay="3s", monitor="2s")


def _sigint_as_in_a_terminal() -> None:
    # a test run started in the background by a non-interactive shell
    # ignores SIGINT, and its children inherit that (bash: "asynchronous
    # commands ignore SIGINT"); Ctrl-C in a terminal is the default action
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(lab: Any, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, DOCKER_HOST=lab.docker_host)
    return subprocess.Popen(
        [sys.executable, "-m", "zdd_swarm", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_sigint_as_in_a_terminal,
    )


def wait_updating(docker_client: Any, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = docker_client.api.inspect_service(name).get("UpdateStatus") or {}
        if status.get("State") == "updating":
            return
        time.sleep(0.3)
    raise AssertionError(f"{name}: no update started within {timeout}s")


def test_controller_killed_mid_rollout_then_watch_finishes(
    lab: Any, docker_client: Any, service_name: str
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=4, update_config=SLOW)
    proc = start_cli(
        lab,
        "update",
        service_name,
        "--image",
        lab.image("crash"),
        "--update-failure-action",
        "rollback",
        "--json",
    )
    wait_updating(docker_client, service_name)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    watcher = start_cli(lab, "watch", service_name, "--task-deadline", "30s", "--json")
    out, err = watcher.communicate(timeout=240)
    data = json.loads(out)
    assert watcher.returncode == 1, (out, err)
    assert data["outcome"] == "rolled_back"
    assert images_running(docker_client, service_name) == {lab.image("v1")}
    # one rollback only: after it the previous spec is the bad one, a second
    # rollback would have redeployed it
    assert docker_client.api.inspect_service(service_name)["Spec"]["TaskTemplate"]["ContainerSpec"][
        "Image"
    ] == lab.image("v1")


def test_rerunning_the_same_update_attaches(
    lab: Any, docker_client: Any, service_name: str
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=3, update_config=SLOW)
    proc = start_cli(lab, "update", service_name, "--image", lab.image("v2"), "--json")
    wait_updating(docker_client, service_name)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    version = docker_client.api.inspect_service(service_name)["Version"]["Index"]
    again = start_cli(lab, "update", service_name, "--image", lab.image("v2"), "--json")
    out, err = again.communicate(timeout=240)
    assert again.returncode == 0, (out, err)
    assert json.loads(out)["outcome"] == "completed"
    spec = docker_client.api.inspect_service(service_name)
    assert spec["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"] == lab.image("v1")
    assert spec["Version"]["Index"] >= version
    assert images_running(docker_client, service_name) == {lab.image("v2")}


def test_ctrl_c_detaches_and_leaves_the_update_running(
    lab: Any, docker_client: Any, service_name: str
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=3, update_config=SLOW)
    proc = start_cli(lab, "update", service_name, "--image", lab.image("v2"))
    wait_updating(docker_client, service_name)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"no exit 60 s after SIGINT; stdout: {out[-2000:]} stderr: {err[-3000:]}"
        ) from None
    assert proc.returncode == 3, (out, err)
    assert f"zdd-swarm watch {service_name}" in err
    assert f"zdd-swarm rollback {service_name}" in err
    status = docker_client.api.inspect_service(service_name)["UpdateStatus"]["State"]
    assert status in ("updating", "completed")


def test_image_missing_from_registry_is_rolled_back_with_the_engine_error(
    lab: Any, docker_client: Any, service_name: str
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=2)
    result = Controller(
        DockerEngine(lab.docker_host), options=RolloutOptions(task_deadline="40s")
    ).update(service_name, ServiceChange(image=lab.image("does-not-exist")))
    assert result.outcome is Outcome.ROLLED_BACK, result.summary()
    errors = " ".join(t.error for b in result.batches for t in b.tasks)
    assert "does-not-exist" in errors or "No such image" in errors or "not found" in errors, errors
    assert images_running(docker_client, service_name) == {lab.image("v1")}
