"""Fixtures of the integration tests: the local swarm lab (zdd_swarm.lab).

The lab is brought up once per session and left up afterwards, so the next
run only checks it (well under a second). ``ZDD_LAB_DOWN=1`` takes it down at
the end of the session. If the lab cannot be brought up, every test that
uses it errors with the lab's one-line reason: never a skip.

The lab is not a pytest-docker ``docker_services`` project (that runs
``docker compose`` against one engine; the lab is a multi-node swarm it builds
itself); pytest-docker's compose helpers run the load clients (load.py).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from docker.errors import NotFound

from zdd_swarm import DockerEngine
from zdd_swarm.bluegreen import Colour
from zdd_swarm.lab import Lab, LabError

from .support import cleanup_objects

NODES = 3


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The lab (3 nodes), up."""
    the_lab = Lab(nodes=NODES)
    error: LabError | None = None
    try:
        the_lab.up()
    except LabError as exc:
        error = exc
    if error is not None:
        pytest.fail(f"the swarm lab could not be brought up: {error}", pytrace=False)
    yield the_lab
    if os.environ.get("ZDD_LAB_DOWN") == "1":
        the_lab.down()


@pytest.fixture(scope="session")
def prometheus(lab: Lab) -> str:
    """The lab's Prometheus, started if it does not run: the URL of its HTTP
    API from the host. It scrapes the tasks of services labelled
    ``prometheus.scrape=true``, labelling each series with ``service``."""
    try:
        return lab.prometheus()
    except LabError as exc:
        pytest.fail(f"the lab's Prometheus could not be started: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def docker_client(lab: Lab) -> Iterator[Any]:
    """A docker SDK client of the lab's manager."""
    client = docker.DockerClient(base_url=lab.docker_host)
    yield client
    client.close()


def _short(test_name: str) -> str:
    short = re.sub(r"[^a-z0-9]+", "-", test_name.removeprefix("test_").lower()).strip("-")
    return short[:24].strip("-") or "test"


@pytest.fixture
def service_name(request: pytest.FixtureRequest, docker_client: Any) -> Iterator[str]:
    """A unique service name (``t-<test>-<random>``); the service is removed
    after the test if it exists."""
    name = f"t-{_short(request.node.name)}-{uuid.uuid4().hex[:6]}"
    yield name
    with contextlib.suppress(NotFound):
        docker_client.api.remove_service(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test that made services (``service_name``) gets, in its
    report, what each node's engine says of their containers: state and the
    last healthcheck results. A task the engine left "starting", or a probe
    that could not run, shows there (CI keeps only the output)."""
    report = yield
    funcargs = getattr(item, "funcargs", {})
    name, lab = funcargs.get("service_name"), funcargs.get("lab")
    if report.when == "call" and report.failed and isinstance(name, str) and lab is not None:
        report.sections.append(("lab: the test's containers, node by node", _containers(lab, name)))
    return report


def _containers(lab: Lab, prefix: str) -> str:
    lines = []
    for i in range(1, NODES + 1):
        try:
            client = lab.client(i, timeout=10)
            found = client.api.containers(all=True, filters={"label": "com.docker.swarm.task.id"})
            for summary in found:
                labels = summary.get("Labels") or {}
                if not labels.get("com.docker.swarm.service.name", "").startswith(prefix):
                    continue
                state = client.api.inspect_container(summary["Id"])["State"]
                health = state.get("Health") or {}
                lines.append(
                    f"{lab.node_name(i)} {summary['Names'][0]} {summary.get('Image')}: "
                    f"{state.get('Status')} since {state.get('StartedAt')}, "
                    f"health {health.get('Status', '-')}, exit {state.get('ExitCode')}"
                )
                for probe in (health.get("Log") or [])[-3:]:
                    output = " ".join(str(probe.get("Output", "")).split())[:160]
                    lines.append(
                        f"    probe {probe.get('Start')}: {probe.get('ExitCode')} {output}"
                    )
            client.close()
        except Exception as exc:  # a diagnosis must not hide the failure
            lines.append(f"{lab.node_name(i)}: {exc}")
    return "\n".join(lines) or "no containers"


@pytest.fixture
def app(service_name: str, docker_client: Any) -> Iterator[str]:
    """A blue-green app name; its colour services and objects (secrets,
    configs named after it) are removed after the test."""
    yield service_name
    for colour in Colour:
        with contextlib.suppress(NotFound):
            docker_client.api.remove_service(colour.service(service_name))
    cleanup_objects(docker_client, service_name)


@pytest.fixture
def engine(lab: Lab) -> DockerEngine:
    """The engine adapter of the lab's manager."""
    return DockerEngine(lab.docker_host)


@pytest.fixture
def failing_endpoint() -> Iterator[str]:
    """An HTTP endpoint on the host that answers every request with 503: a
    gate or preview check on it fails."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health"
    server.shutdown()
