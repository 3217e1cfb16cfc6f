"""Smoke tests of the swarm lab itself: nodes, services across nodes, the
test images' behaviour, idempotent up, and losing and restoring a node.

Every wait is bounded; the node-loss test runs last (it disturbs the swarm
for about 20 s).
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import docker
import pytest
from docker.types import EndpointSpec, RestartPolicy, ServiceMode

from zdd_swarm.lab import TAGS, Lab

from .support import wait_until

pytestmark = pytest.mark.integration

SECOND = 1_000_000_000


def tasks(client: Any, service: str) -> list[Mapping[str, Any]]:
    return list(client.api.tasks(filters={"service": service}))


def create(client: Any, lab: Lab, name: str, tag: str, replicas: int, **kwargs: Any) -> Any:
    return client.services.create(
        lab.image(tag),
        name=name,
        networks=[lab.network],
        mode=ServiceMode("replicated", replicas=replicas),
        endpoint_spec=EndpointSpec(mode="dnsrr"),
        restart_policy=RestartPolicy(condition="any", delay=SECOND),
        **kwargs,
    )


@pytest.fixture
def node_clients(lab: Lab, docker_client: Any) -> Iterator[dict[str, Any]]:
    """Swarm node ID -> docker client of that node's engine."""
    by_host = {lab.node_name(i): i for i in range(1, lab.nodes + 1)}
    clients = {
        n["ID"]: docker.DockerClient(base_url=lab.node_host(by_host[n["Description"]["Hostname"]]))
        for n in docker_client.api.nodes()
    }
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture
def container(docker_client: Any) -> Iterator[Callable[..., Any]]:
    """Run a detached container on the manager; removed after the test."""
    made: list[Any] = []

    def run(image: str, **kwargs: Any) -> Any:
        made.append(docker_client.containers.run(image, detach=True, **kwargs))
        return made[-1]

    yield run
    for c in made:
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True)


def http_body(c: Any) -> str:
    code, out = c.exec_run(["wget", "-q", "-O-", "http://127.0.0.1:8080/"])
    return str(out.decode()) if code == 0 else f"<wget exit {code}>"


def answer(c: Any) -> str | None:
    body = http_body(c)
    return None if body.startswith("<wget exit") else body


def health(c: Any) -> str:
    c.reload()
    return str(c.attrs["State"].get("Health", {}).get("Status", "none"))


# -- the swarm -----------------------------------------------------------------


def test_three_ready_nodes_with_distinct_hostnames(lab: Lab, docker_client: Any) -> None:
    nodes = docker_client.api.nodes()
    hosts = sorted(n["Description"]["Hostname"] for n in nodes)
    assert hosts == [lab.node_name(i) for i in (1, 2, 3)]
    assert {n["Status"]["State"] for n in nodes} == {"ready"}
    leader = [n for n in nodes if n.get("ManagerStatus", {}).get("Leader")]
    assert [n["Description"]["Hostname"] for n in leader] == [lab.node_name(1)]
    workers = {
        n["Description"]["Hostname"]: n["Status"]["Addr"] for n in nodes if "ManagerStatus" not in n
    }
    assert workers == {lab.node_name(i): lab.node_address(i) for i in (2, 3)}


@pytest.mark.serial
def test_up_again_is_fast_and_changes_nothing(lab: Lab) -> None:
    started = time.monotonic()
    info = lab.up()
    elapsed = time.monotonic() - started
    assert info.reused
    assert elapsed < 5, f"a second up() took {elapsed:.1f}s"
    assert lab.is_up()
    assert info.docker_host == lab.docker_host == f"unix://{lab.run_dir}/node1.sock"
    registry = f"{lab.host_address}:5000"
    assert info.registry == lab.registry == registry
    assert [n.name for n in info.nodes] == [lab.node_name(i) for i in (1, 2, 3)]
    assert info.images == {tag: f"{registry}/zdd-app:{tag}" for tag in TAGS}
    assert lab.image("v2") == f"{registry}/zdd-app:v2"


def test_cli_env_and_status(lab: Lab) -> None:
    env = subprocess.run(
        [sys.executable, "-m", "zdd_swarm.lab", "env"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert f"export DOCKER_HOST={lab.docker_host}\n" in env
    status = subprocess.run(
        [sys.executable, "-m", "zdd_swarm.lab", "status"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert "lab: up (3 nodes)" in status.stdout


def test_service_spreads_over_nodes_healthy_and_serves(
    lab: Lab, docker_client: Any, service_name: str, node_clients: dict[str, Any]
) -> None:
    create(docker_client, lab, service_name, "v1", replicas=6)

    def running() -> list[Mapping[str, Any]] | None:
        now = [
            t
            for t in tasks(docker_client, service_name)
            if t["DesiredState"] == "running" and t["Status"]["State"] == "running"
        ]
        return now if len(now) == 6 else None

    live = wait_until("6 running tasks", running, 90)
    assert len({t["NodeID"] for t in live}) > 1, "all tasks landed on one node"
    for t in live:
        engine = node_clients[t["NodeID"]]
        state = engine.api.inspect_container(t["Status"]["ContainerStatus"]["ContainerID"])
        assert state["State"]["Health"]["Status"] == "healthy"

    # Every task answers "v1\n" on the overlay, seen from a one-shot container
    # that also resolves the (dnsrr) service name to the six task addresses.
    addresses = sorted(
        a["Addresses"][0].split("/")[0]
        for t in live
        for a in t["NetworksAttachments"]
        if a["Network"]["Spec"]["Name"] == lab.network
    )
    assert len(addresses) == 6
    script = f"nslookup {service_name} 127.0.0.11 | sed -n 's/^Address: //p'; " + "; ".join(
        f"echo {ip}=$(wget -q -O- http://{ip}:8080/)" for ip in addresses
    )
    out = docker_client.containers.run(
        lab.image("v1"),
        entrypoint=["/bin/sh", "-c", script],
        network=lab.network,
        remove=True,
        healthcheck={"test": ["NONE"]},
    ).decode()
    lines = out.split()
    assert sorted(line for line in lines if "=" not in line) == addresses
    assert sorted(line for line in lines if "=" in line) == [f"{ip}=v1" for ip in addresses]

    docker_client.api.remove_service(service_name)
    wait_until(
        "the service to be gone",
        lambda: not docker_client.services.list(filters={"name": service_name}),
        10,
    )


# -- the images ----------------------------------------------------------------


def test_images_carry_tag_label_and_their_healthcheck(lab: Lab, docker_client: Any) -> None:
    for tag in TAGS:
        image = docker_client.images.pull(lab.image(tag))
        config = image.attrs["Config"]
        assert config["Labels"]["zdd.lab.tag"] == tag
        check = config.get("Healthcheck") or {}
        if tag in ("nohc", "slow-nohc"):
            assert check.get("Test") == ["NONE"], tag
        else:
            assert check["Test"] == ["CMD", "/bin/sh", "/health.sh"], tag
            assert (check["Interval"], check["Timeout"], check["Retries"]) == (SECOND, SECOND, 2), (
                tag
            )
            assert check.get("StartPeriod", 0) == (60 * SECOND if tag == "slow" else 0), tag


def test_bodies_drain_and_abrupt_stop(lab: Lab, container: Callable[..., Any]) -> None:
    apps = {
        tag: container(lab.image(tag))
        for tag in ("v1", "v2", "v3", "nohc", "abrupt", "unhealthy", "sick")
    }
    for tag, c in apps.items():
        body = wait_until(f"{tag} to answer", functools.partial(answer, c), 10, 0.2)
        assert body == f"{tag}\n"
    wait_until("v1 healthy", lambda: health(apps["v1"]) == "healthy", 10, 0.2)
    assert health(apps["nohc"]) == "none"

    # v1 keeps serving about 4 s after SIGTERM, then exits 0.
    started = time.monotonic()
    apps["v1"].stop(timeout=15)
    took = time.monotonic() - started
    apps["v1"].reload()
    assert apps["v1"].attrs["State"]["ExitCode"] == 0
    assert 3.5 <= took <= 8, f"v1 stopped in {took:.1f}s"

    # abrupt dies at once.
    started = time.monotonic()
    apps["abrupt"].stop(timeout=15)
    took = time.monotonic() - started
    apps["abrupt"].reload()
    assert apps["abrupt"].attrs["State"]["ExitCode"] == 143
    assert took < 2, f"abrupt stopped in {took:.1f}s"


def test_sick_turns_unhealthy_and_slow_starts_late(lab: Lab, container: Callable[..., Any]) -> None:
    sick = container(lab.image("sick"))
    slow = container(lab.image("slow"))
    quick_slow = container(lab.image("slow"), environment={"APP_SLOW_SECONDS": "3"})
    unhealthy = container(lab.image("unhealthy"))
    wait_until("sick to be healthy", lambda: health(sick) == "healthy", 10, 0.2)
    wait_until("quick slow to be healthy", lambda: health(quick_slow) == "healthy", 15, 0.2)
    wait_until("unhealthy to be unhealthy", lambda: health(unhealthy) == "unhealthy", 10, 0.2)
    assert health(slow) == "starting"
    assert http_body(slow).startswith("<wget exit")
    wait_until("sick to turn unhealthy", lambda: health(sick) == "unhealthy", 20, 0.5)
    assert health(slow) == "starting"


def address(c: Any) -> str:
    c.reload()
    return str(next(iter(c.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"])


def test_flaky_stays_healthy_while_failing_a_share_and_metrics_count_it(
    lab: Lab, container: Callable[..., Any]
) -> None:
    flaky = container(lab.image("flaky"), environment={"APP_ERROR_PERCENT": "50"})
    client = container(lab.image("v1"))
    wait_until("flaky to be healthy", lambda: health(flaky) == "healthy", 10, 0.2)
    url = f"http://{address(flaky)}:8080"
    loop = f"for i in $(seq 100); do wget -q -O- {url}/ 2>/dev/null || echo failed; done"
    out = client.exec_run(["sh", "-c", loop]).output.decode().split()
    failed = out.count("failed")
    assert out.count("flaky") == 100 - failed and 20 <= failed <= 80, out
    # written at most once a second, on a request: the first read only flushes
    time.sleep(1.2)
    client.exec_run(["wget", "-q", "-O", "/dev/null", f"{url}/metrics"])
    metrics = client.exec_run(["wget", "-q", "-O-", f"{url}/metrics"]).output.decode()
    assert f'app_requests_total{{tag="flaky",code="500"}} {failed}\n' in metrics, metrics
    assert f'app_requests_total{{tag="flaky",code="200"}} {100 - failed}\n' in metrics, metrics
    assert f'app_request_errors_total{{tag="flaky"}} {failed}\n' in metrics, metrics
    # healthchecks and scrapes are not counted; v1 counts too, from zero
    own = client.exec_run(["wget", "-q", "-O-", "http://127.0.0.1:8080/metrics"]).output
    assert 'app_requests_total{tag="v1",code="200"} 0\n' in own.decode()
    assert health(flaky) == "healthy"


def test_crash_image_fails_with_nonzero_exit(
    lab: Lab, docker_client: Any, service_name: str
) -> None:
    create(docker_client, lab, service_name, "crash", replicas=1)

    def failed() -> list[Mapping[str, Any]]:
        return [t for t in tasks(docker_client, service_name) if t["Status"]["State"] == "failed"]

    gone = wait_until("a failed task", failed, 30)
    assert gone[0]["Status"]["ContainerStatus"]["ExitCode"] == 1
    assert "non-zero exit (1)" in gone[0]["Status"]["Err"]


def test_unhealthy_image_never_runs(lab: Lab, docker_client: Any, service_name: str) -> None:
    create(docker_client, lab, service_name, "unhealthy", replicas=1)
    seen: set[str] = set()

    def failed_unhealthy() -> list[Mapping[str, Any]]:
        now = tasks(docker_client, service_name)
        seen.update(t["Status"]["State"] for t in now)
        return [
            t
            for t in now
            if t["Status"]["State"] == "failed" and "unhealthy" in t["Status"].get("Err", "")
        ]

    wait_until("a task failed as unhealthy", failed_unhealthy, 45)
    assert "running" not in seen, "an unhealthy task was reported running"


# -- losing a node (last: it disturbs the swarm) ---------------------------------


@pytest.mark.serial
def test_killed_node_goes_down_and_comes_back(lab: Lab) -> None:
    lab.kill_node(3)
    try:
        started = time.monotonic()
        assert lab.wait_node_state(3, "down", 40), f"node 3 is {lab.node_state(3)}"
        down_after = time.monotonic() - started
    finally:
        lab.start_node(3, wait_ready=True, timeout=60)
    assert lab.node_state(3) == "ready"
    assert down_after < 40
    assert lab.is_up()
