"""The examples and the CLI, run as a user would, against the lab swarm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .support import create_service, images_running

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def run(lab: Any, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DOCKER_HOST=lab.docker_host)
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli(lab: Any, *args: str) -> tuple[int, dict[str, Any]]:
    proc = run(lab, "-m", "zdd_swarm", *args, "--json")
    return proc.returncode, json.loads(proc.stdout)


def test_deploy_script_posts_the_outcome(lab: Any, docker_client: Any, service_name: str) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=2)
    good = run(lab, "examples/deploy_script.py", service_name, lab.image("v2"))
    assert good.returncode == 0, good.stderr
    assert f"[notify] {service_name}: completed" in good.stdout
    bad = run(
        lab, "examples/deploy_script.py", service_name, lab.image("crash"), "--task-deadline", "30s"
    )
    assert bad.returncode == 1, bad.stderr
    assert f"[notify] {service_name}: rolling back" in bad.stdout
    assert f"[notify] {service_name}: rolled_back" in bad.stdout
    assert images_running(docker_client, service_name) == {lab.image("v2")}


def test_platform_embed_rolls_out_services_in_turn(
    lab: Any, docker_client: Any, service_name: str
) -> None:
    second = f"{service_name}-b"
    create_service(docker_client, lab, service_name, "v1", replicas=2)
    create_service(docker_client, lab, second, "v1", replicas=2)
    try:
        proc = run(
            lab,
            "examples/platform_embed.py",
            f"{service_name}={lab.image('v2')}",
            f"{second}={lab.image('v3')}",
        )
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert [s["outcome"] for s in report["services"]] == ["completed", "completed"]
        kinds = {(e["service"], e["event"]) for e in report["events"]}
        assert (service_name, "rollout_finished") in kinds and (second, "batch_started") in kinds
        assert images_running(docker_client, second) == {lab.image("v3")}
    finally:
        docker_client.api.remove_service(second)


def test_cli_exit_codes_on_the_lab(lab: Any, docker_client: Any, service_name: str) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=2)
    version = docker_client.api.inspect_service(service_name)["Version"]["Index"]
    code, data = cli(
        lab, "update", service_name, "--update-max-failure-ratio", "1.5", "--image", lab.image("v2")
    )
    assert code == 2 and "max_failure_ratio" in data["reason"]
    code, data = cli(lab, "update", "no-such-service", "--image", lab.image("v2"))
    assert code == 2 and data["error"] == "ServiceNotFound"
    assert docker_client.api.inspect_service(service_name)["Version"]["Index"] == version
    code, data = cli(
        lab, "update", service_name, "--image", lab.image("v2"), "--update-parallelism", "2"
    )
    assert code == 0 and data["outcome"] == "completed"
    assert data["image_before"] == lab.image("v1") and data["image_after"] == lab.image("v2")
    code, data = cli(
        lab, "update", service_name, "--image", lab.image("crash"), "--task-deadline", "30s"
    )
    assert code == 1 and data["outcome"] == "rolled_back"
    assert any(t["error"] for b in data["batches"] for t in b["tasks"])
    code, data = cli(lab, "status", service_name)
    assert code == 0 and data["image"] == lab.image("v2")
    proc = run(
        lab,
        "-m",
        "zdd_swarm",
        "-H",
        "unix:///nonexistent/docker.sock",
        "update",
        service_name,
        "--image",
        lab.image("v3"),
        "--json",
    )
    assert proc.returncode == 5, proc.stdout


def test_compose_file_example(
    lab: Any, docker_client: Any, service_name: str, tmp_path: Path
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=2)
    compose = (ROOT / "examples" / "docker-compose.yml").read_text()
    compose = compose.replace("  web:", f"  {service_name}:").replace(
        "10.88.0.1:5000/zdd-app:v2", lab.image("v2")
    )
    path = tmp_path / "docker-compose.yml"
    path.write_text(compose)
    code, data = cli(lab, "update", service_name, "--compose", str(path))
    assert code == 0, data
    spec = docker_client.api.inspect_service(service_name)["Spec"]
    assert spec["UpdateConfig"]["Order"] == "start-first"
    assert spec["UpdateConfig"]["Parallelism"] == 2
    assert images_running(docker_client, service_name) == {lab.image("v2")}
