"""Helpers for integration tests on the lab swarm."""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
from docker.types import (
    ConfigReference,
    EndpointSpec,
    Mount,
    Resources,
    RestartPolicy,
    SecretReference,
    ServiceMode,
)

from zdd_swarm import Controller, DockerEngine, RolloutOptions, UpdateConfig

SECOND = 1_000_000_000


def create_service(
    client: Any,
    lab: Any,
    name: str,
    tag: str = "v1",
    replicas: int = 6,
    update_config: UpdateConfig | None = None,
    wait: bool = True,
    **kwargs: Any,
) -> Any:
    """Create a dnsrr service of a lab image on the lab network and wait
    until all its tasks are RUNNING (healthy)."""
    config = (update_config or UpdateConfig(monitor="3s")).to_api()
    service = client.services.create(
        lab.image(tag),
        name=name,
        networks=[lab.network],
        mode=ServiceMode("replicated", replicas=replicas),
        endpoint_spec=EndpointSpec(mode="dnsrr"),
        restart_policy=RestartPolicy(condition="any", delay=SECOND),
        update_config={k: v for k, v in config.items()},
        **kwargs,
    )
    if wait:
        wait_running(client, name, replicas)
    return service


def running_tasks(client: Any, name: str) -> list[Mapping[str, Any]]:
    tasks = client.api.tasks(filters={"service": name, "desired-state": "running"})
    return [t for t in tasks if t["Status"]["State"] == "running"]


def wait_running(client: Any, name: str, replicas: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(running_tasks(client, name)) >= replicas:
            return
        time.sleep(0.5)
    states = [
        (t["Status"]["State"], t["Status"].get("Err"))
        for t in client.api.tasks(filters={"service": name})
    ]
    raise AssertionError(f"{name}: {replicas} tasks not running after {timeout}s: {states}")


def images_running(client: Any, name: str) -> set[str]:
    return {t["Spec"]["ContainerSpec"]["Image"] for t in running_tasks(client, name)}


def rich_spec_kwargs(client: Any, name: str) -> dict[str, Any]:
    """Service settings a user would be upset to lose: labels, env, mounts,
    secrets, configs, resources, placement, container labels."""
    secret = client.secrets.create(name=f"{name}-secret", data=b"hunter2")
    config = client.configs.create(name=f"{name}-config", data=b"key: value")
    return {
        "labels": {"team": "payments", "tier": "front"},
        "container_labels": {"com.example.owner": "ops"},
        "env": ["GREETING=hello", "DB_PASSWORD=not-in-logs"],
        "mounts": [
            Mount(target="/scratch", source="", type="tmpfs"),
            Mount(target="/data", source=f"{name}-vol", type="volume"),
        ],
        "secrets": [SecretReference(secret.id, f"{name}-secret")],
        "configs": [ConfigReference(config.id, f"{name}-config", filename="/etc/app.yml")],
        "resources": Resources(mem_limit=64 * 1024 * 1024, cpu_reservation=10_000_000),
        "constraints": ["node.role!=nosuchrole"],
        "preferences": [("spread", "node.id")],
        "stop_grace_period": 6 * SECOND,
    }


def cleanup_objects(client: Any, name: str) -> None:
    for collection in (client.secrets, client.configs):
        for obj in collection.list(filters={"name": name}):
            with contextlib.suppress(Exception):
                obj.remove()


def strip_volatile(spec: Mapping[str, Any]) -> dict[str, Any]:
    return dict(spec)


def names_of(events: Sequence[Any]) -> list[str]:
    return [e.name for e in events]


def kill_one_task(lab: Any, client: Any, name: str) -> str:
    """SIGKILL the container of one running task, as the kernel's OOM killer
    would; Swarm restarts it (restart policy ``any``)."""
    task = running_tasks(client, name)[0]
    hostname = client.nodes.get(task["NodeID"]).attrs["Description"]["Hostname"]
    node = next(i for i in range(1, lab.nodes + 1) if lab.node_name(i) == hostname)
    container = task["Status"]["ContainerStatus"]["ContainerID"]
    lab.client(node).containers.get(container).kill()
    return str(task["ID"])


def controller(engine: DockerEngine, hooks: Sequence[Any] = (), **options: Any) -> Controller:
    """A controller of the lab's engine; a task not RUNNING in 30 s fails."""
    options.setdefault("task_deadline", "30s")
    return Controller(engine, hooks=hooks, options=RolloutOptions(**options))


_OVERLAY_GET = """
host=$1; port=$2; path=$3; ips=; named=; take=
for w in $(nslookup "$host" 2>/dev/null); do
  case "$w" in
    Name:) named=1 ;;
    Address*) [ -n "$named" ] && take=1 ;;
    [0-9]*.*.*.*) [ -n "$take" ] && ips="$ips ${w%%:*}"; take= ;;
  esac
done
set -- $ips
[ $# -gt 0 ] || { echo "no address for $host" >&2; exit 1; }
shift $(( RANDOM % $# ))
exec timeout 3 wget -S -q -O - "http://$1:$port$path"  # (wget -T crashes static busybox)
"""


@contextlib.contextmanager
def overlay_fetch(client: Any, lab: Any) -> Iterator[Callable[[str, float], Any]]:
    """A ``zdd_swarm.bluegreen.probe.Fetch`` that sends each request from a
    container on the lab's overlay (the routers' addresses are reachable only
    there): the name in the URL is resolved by Swarm's DNS, one address taken
    at random, as the load clients do."""
    container = client.containers.run(
        lab.image("v1"), entrypoint=["sleep", "900"], network=lab.network, detach=True
    )

    def fetch(url: str, timeout: float) -> tuple[dict[str, str], str]:
        parts = urllib.parse.urlsplit(url)
        argv = [parts.hostname or "", str(parts.port or 80), parts.path or "/"]
        code, (out, err) = container.exec_run(["sh", "-c", _OVERLAY_GET, "sh", *argv], demux=True)
        text = (err or b"").decode(errors="replace")
        if code != 0:
            raise OSError(text.strip() or f"wget exit {code}")
        headers = dict(
            (k.strip(), v.strip())
            for k, _, v in (ln.partition(":") for ln in text.splitlines())
            if v and not k.strip().startswith("HTTP/")
        )
        return headers, (out or b"").decode(errors="replace")

    try:
        yield fetch
    finally:
        container.remove(force=True)


def wait_until(what: str, check: Callable[[], Any], timeout: float, pause: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(pause)
