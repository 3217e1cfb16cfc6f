"""A canary on the lab swarm: Swarm's own updater held at each step by a
long delay, released by a change of UpdateConfig alone, and the original
spec restored on abort (see zdd_swarm/canary/driver.py)."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from docker.errors import NotFound

from zdd_swarm.canary import CanaryPhase, CanaryRecord, canary_status
from zdd_swarm.canary.analysis import Metric, QueryContext
from zdd_swarm.canary.driver import Canary, CanaryOutcome
from zdd_swarm.canary.record import SERVICE_LABEL
from zdd_swarm.canary.spec import CanarySpec
from zdd_swarm.canary.steps import parse_steps
from zdd_swarm.config import UpdateConfig
from zdd_swarm.engine import DockerEngine
from zdd_swarm.model import image_of

from .support import create_service, running_tasks

pytestmark = pytest.mark.integration

CONFIG = UpdateConfig(parallelism=2, monitor="2s", order="start-first")


def tags(client: Any, name: str) -> list[str]:
    return sorted(
        t["Spec"]["ContainerSpec"]["Image"].rpartition(":")[2] for t in running_tasks(client, name)
    )


class Seen:
    """A provider that records which releases run when it is asked."""

    def __init__(self, client: Any, name: str, value: float = 0.0) -> None:
        self.client, self.name, self.value = client, name, value
        self.tags: list[list[str]] = []

    def measure(self, context: QueryContext) -> Any:
        self.tags.append(tags(self.client, self.name))
        return [self.value]


def test_a_good_release_is_held_at_each_step_then_completes(
    lab: Any, docker_client: Any, service_name: str, engine: DockerEngine
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=4, update_config=CONFIG)
    before = docker_client.api.inspect_service(service_name)["Spec"]
    seen = Seen(docker_client, service_name)
    analyses = {"seen": (Metric("seen", seen, success_condition="result[0] < 1"),)}
    steps = parse_steps(["25%", "pause=8s", "analysis=seen", "50%", "analysis=seen", "100%"])
    canary = Canary(engine, CanarySpec(steps, analyses), poll_interval=0.5, step_timeout=120)

    result = canary.run(service_name, lab.image("v2"))

    assert result.outcome is CanaryOutcome.COMPLETED, result.reason
    # before anything changed; after 25 % and an 8 s pause: still one task; then two
    assert [t.count("v2") for t in seen.tags] == [0, 1, 2]
    assert [len(t) for t in seen.tags] == [4, 4, 4]
    assert tags(docker_client, service_name) == ["v2"] * 4
    after = docker_client.api.inspect_service(service_name)
    assert after["Spec"]["UpdateConfig"] == before["UpdateConfig"]
    assert after["UpdateStatus"]["State"] == "completed"


def test_steps_on_the_top_level_update_run_a_canary(
    lab: Any, docker_client: Any, service_name: str
) -> None:
    import zdd_swarm

    create_service(docker_client, lab, service_name, "v1", replicas=2, update_config=CONFIG)
    result = zdd_swarm.update(
        service_name, image=lab.image("v2"), host=lab.docker_host, steps=["50%", "100%"]
    )
    assert result.outcome is CanaryOutcome.COMPLETED, result.reason
    assert [r.step for r in result.steps] == ["50%", "100%"]
    assert tags(docker_client, service_name) == ["v2", "v2"]


def test_a_failed_analysis_puts_every_task_back_on_the_original_spec(
    lab: Any, docker_client: Any, service_name: str, engine: DockerEngine
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=4, update_config=CONFIG)
    before = docker_client.api.inspect_service(service_name)["Spec"]
    seen = Seen(docker_client, service_name, value=0.2)
    errors = Metric(
        "error-ratio", seen, success_condition="result[0] < 0.05", interval="1s", count=2
    )
    steps = parse_steps(["25%", "analysis=errors", "100%"], {"errors"})
    # check_metrics measures once before anything changes; its value is not judged
    canary = Canary(
        engine, CanarySpec(steps, {"errors": (errors,)}), poll_interval=0.5, step_timeout=120
    )
    started = time.monotonic()

    result = canary.run(service_name, lab.image("v2"))

    assert result.outcome is CanaryOutcome.ROLLED_BACK, result.reason
    assert result.failed_step == 1
    assert "value [0.2]" in result.reason
    assert seen.tags[1].count("v2") == 1  # the analysis ran on the canary
    assert tags(docker_client, service_name) == ["v1"] * 4
    spec = docker_client.api.inspect_service(service_name)["Spec"]
    assert (
        spec["TaskTemplate"]["ContainerSpec"]["Image"]
        == before["TaskTemplate"]["ContainerSpec"]["Image"]
    )
    assert spec["UpdateConfig"] == before["UpdateConfig"]
    assert time.monotonic() - started < 120


# -- from another process: promote, abort, watch -------------------------------


@pytest.fixture
def records(docker_client: Any, service_name: str) -> Iterator[None]:
    """The canary's record and requests are removed after the test."""
    yield
    for config in docker_client.api.configs(filters={"label": f"{SERVICE_LABEL}={service_name}"}):
        with contextlib.suppress(NotFound):
            docker_client.api.remove_config(config["ID"])


def zdd(lab: Any, *args: str) -> list[str]:
    return [sys.executable, "-m", "zdd_swarm", "-H", lab.docker_host, *args]


def start_paused_canary(
    lab: Any, docker_client: Any, name: str, engine: DockerEngine
) -> tuple[Any, CanaryRecord]:
    """A canary started by ``zdd-swarm update`` in a process of its own,
    once it waits at its ``pause`` step (25 %: one task of four on v2)."""
    create_service(docker_client, lab, name, "v1", replicas=4, update_config=CONFIG)
    steps = ["--step", "25%", "--step", "pause", "--step", "100%"]
    proc = subprocess.Popen(zdd(lab, "update", name, "--image", lab.image("v2"), *steps))
    record = paused(engine, name)
    assert tags(docker_client, name) == ["v1", "v1", "v1", "v2"]
    return proc, record


def paused(engine: DockerEngine, name: str, timeout: float = 60) -> CanaryRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = canary_status(engine, name)
        if record is not None and record.phase is CanaryPhase.PAUSED:
            assert record.describe() == "step 2 of 3 (25%), paused for approval"
            return record
        time.sleep(0.5)
    raise AssertionError(f"no canary paused on {name} after {timeout}s")


def test_promote_from_a_second_process_completes_the_canary(
    lab: Any, docker_client: Any, service_name: str, engine: DockerEngine, records: None
) -> None:
    # the top-level commands reach the canary: status shows it, watch
    # follows it to its end, promote ends its pause
    first, _ = start_paused_canary(lab, docker_client, service_name, engine)
    watcher = subprocess.Popen(zdd(lab, "watch", service_name), stdout=subprocess.PIPE, text=True)
    try:
        status = subprocess.run(zdd(lab, "status", service_name), capture_output=True, text=True)
        assert "canary: step 2 of 3 (25%), paused for approval" in status.stdout
        assert subprocess.run(zdd(lab, "promote", service_name)).returncode == 0
        assert first.wait(timeout=90) == 0
        out, _ = watcher.communicate(timeout=30)
        assert watcher.returncode == 0 and out.startswith(f"{service_name}: canary completed")
    finally:
        first.kill()
        watcher.kill()
    assert tags(docker_client, service_name) == ["v2"] * 4
    assert canary_status(engine, service_name) is None


def test_abort_from_a_second_process_restores_the_original_spec(
    lab: Any, docker_client: Any, service_name: str, engine: DockerEngine, records: None
) -> None:
    first, record = start_paused_canary(lab, docker_client, service_name, engine)
    try:
        assert subprocess.run(zdd(lab, "canary", "abort", service_name)).returncode == 0
        assert first.wait(timeout=90) == 1  # aborted
    finally:
        first.kill()
    assert tags(docker_client, service_name) == ["v1"] * 4
    spec = docker_client.api.inspect_service(service_name)["Spec"]
    assert spec["TaskTemplate"]["ContainerSpec"]["Image"] == image_of(record.original)
    assert spec["UpdateConfig"] == record.original["UpdateConfig"]
    assert canary_status(engine, service_name) is None


def test_watch_finishes_a_canary_whose_process_was_killed(
    lab: Any, docker_client: Any, service_name: str, engine: DockerEngine, records: None
) -> None:
    first, record = start_paused_canary(lab, docker_client, service_name, engine)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    # a fresh heartbeat keeps the canary its owner's: wait until it is stale
    while time.time() - record.heartbeat < 4:
        time.sleep(0.5)
        record = canary_status(engine, service_name) or record
    watcher = subprocess.Popen(zdd(lab, "canary", "watch", service_name, "--stale-after", "3"))
    try:
        deadline = time.monotonic() + 30
        while (now := canary_status(engine, service_name)) and now.owner == record.owner:
            assert time.monotonic() < deadline, "watch did not take the canary over"
            time.sleep(0.5)
        paused(engine, service_name)
        assert subprocess.run(zdd(lab, "canary", "promote", service_name)).returncode == 0
        assert watcher.wait(timeout=90) == 0
    finally:
        watcher.kill()
    assert tags(docker_client, service_name) == ["v2"] * 4
    assert canary_status(engine, service_name) is None


def test_watch_finishes_a_canary_killed_during_its_analysis(
    lab: Any,
    docker_client: Any,
    service_name: str,
    engine: DockerEngine,
    records: None,
    error_ratio: str,
    tmp_path: Any,
) -> None:
    create_service(docker_client, lab, service_name, "v1", replicas=4, update_config=CONFIG)
    analysis = {"web": {"url": error_ratio, "json_path": "$.ratio"}, "interval": "2s"}
    canary_file = tmp_path / "canary.yml"
    canary_file.write_text(
        json.dumps(
            {
                "steps": ["25%", "analysis=errors", "100%"],
                "analyses": {
                    "errors": {**analysis, "count": 8, "success_condition": "result < 0.05"}
                },
            }
        )
    )
    first = subprocess.Popen(
        zdd(
            lab,
            "update",
            service_name,
            "--image",
            lab.image("v2"),
            "--steps-file",
            str(canary_file),
        )
    )
    deadline = time.monotonic() + 60
    while not ((record := canary_status(engine, service_name)) and record.step == 1):
        assert time.monotonic() < deadline, "the canary never reached its analysis"
        time.sleep(0.3)
    time.sleep(3)  # an analysis under way: a measurement or two taken
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert tags(docker_client, service_name) == ["v1", "v1", "v1", "v2"]
    watcher = subprocess.run(
        zdd(lab, "canary", "watch", service_name, "--stale-after", "3"), timeout=120
    )
    assert watcher.returncode == 0
    assert tags(docker_client, service_name) == ["v2"] * 4
    assert canary_status(engine, service_name) is None
