"""Fixtures of the platform tests: real Prometheus, Pushgateway and HTTP
receivers on loopback, no swarm (rollouts run on FakeEngine).

Prometheus and the Pushgateway are Debian's packages (``prometheus``,
``prometheus-pushgateway``); when they are missing and we are root (CI, on
a fresh Debian), they are installed with apt-get, once per machine (a lock
file keeps pytest-xdist workers from racing dpkg). Every process a fixture
starts is stopped by its PID at the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.server
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PACKAGES = {"prometheus": "prometheus", "prometheus-pushgateway": "prometheus-pushgateway"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _install(binaries: list[str]) -> None:
    if os.geteuid() != 0:
        pytest.fail(
            f"{', '.join(binaries)} missing: apt-get install "
            + " ".join(PACKAGES[b] for b in binaries),
            pytrace=False,
        )
    lock = Path(tempfile.gettempdir()) / "zdd-swarm-apt.lock"
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        missing = [b for b in binaries if shutil.which(b) is None]
        if not missing:
            return
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        packages = [PACKAGES[b] for b in missing]
        # the packages' own services are not wanted: the tests start theirs
        policy = Path("/usr/sbin/policy-rc.d")
        ours = not policy.exists()
        if ours:
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        try:
            for command in (
                ["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
            ):
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
                if done.returncode != 0 and command[1] == "install":
                    pytest.fail(f"apt-get install {' '.join(packages)}: {done.stderr[-500:]}")
        finally:
            if ours:
                policy.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def debian_binaries() -> dict[str, str]:
    """Paths of ``prometheus`` and ``prometheus-pushgateway``, installed if missing."""
    missing = [b for b in PACKAGES if shutil.which(b) is None]
    if missing:
        _install(missing)
    return {b: shutil.which(b) or b for b in PACKAGES}


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not ready in {timeout:g}s")
        time.sleep(0.1)


@contextlib.contextmanager
def process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process of ours, stopped by its PID (SIGTERM, then SIGKILL)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@dataclass
class Prometheus:
    url: str
    targets: list[str]

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for(
        self, expr: str, check: Callable[[list[dict[str, Any]]], bool], timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        """Query until ``check`` holds (a scrape or two away)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if check(result):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr}: {result} after {timeout:g}s")
            time.sleep(0.25)


@pytest.fixture(scope="module")
def pushgateway(
    debian_binaries: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A Pushgateway on loopback; its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("pushgateway") / "pushgateway.log"
    args = [debian_binaries["prometheus-pushgateway"], f"--web.listen-address=127.0.0.1:{port}"]
    with process(args, log) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/-/ready", proc=proc)
        yield url


@dataclass
class Exporter:
    """The test's own exposition of a registry over HTTP, as a platform serves it."""

    registry: Any
    address: str
    stop: Callable[[], None] = field(repr=False)


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    yield Exporter(registry, f"127.0.0.1:{port}", stop)
    stop()


@pytest.fixture(scope="module")
def prometheus(
    debian_binaries: dict[str, str],
    exporter: Exporter,
    pushgateway: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Prometheus]:
    """A Prometheus on loopback scraping the exporter and the Pushgateway every 0.5 s."""
    folder = tmp_path_factory.mktemp("prometheus")
    gateway = urllib.parse.urlsplit(pushgateway).netloc
    config = folder / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 500ms\n  evaluation_interval: 500ms\n"
        "scrape_configs:\n"
        f"  - job_name: platform\n    static_configs:\n      - targets: ['{exporter.address}']\n"
        "  - job_name: pushgateway\n    honor_labels: true\n"
        f"    static_configs:\n      - targets: ['{gateway}']\n"
    )
    port = free_port()
    args = [
        debian_binaries["prometheus"],
        f"--config.file={config}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with process(args, folder / "prometheus.log") as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/-/ready", proc=proc)
        yield Prometheus(url, [exporter.address, gateway])


# -- HTTP receivers of webhooks --------------------------------------------------


@dataclass
class Receiver:
    """A webhook receiver on loopback: what it got, and how it answers."""

    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0
    status: int = 200
    received: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    """A factory of receivers: ``receiver(delay=0, status=200)``."""
    servers: list[tuple[http.server.ThreadingHTTPServer, threading.Thread]] = []
    releases: list[threading.Event] = []

    def make(delay: float = 0.0, status: int = 200) -> Receiver:
        release = threading.Event()
        releases.append(release)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                if got.delay:
                    release.wait(got.delay)  # a slow receiver; let go at teardown
                got.bodies.append(body)
                got.received.set()
                self.send_response(got.status)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        got = Receiver(
            f"http://127.0.0.1:{server.server_address[1]}/hook", delay=delay, status=status
        )
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return got

    yield make
    for release in releases:
        release.set()
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)
