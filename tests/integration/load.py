"""Traffic through Swarm's own discovery, for zero-downtime checks.

The clients are a compose project (``load-clients.yml``) of busybox
containers on the lab's attachable overlay, started and removed with
pytest-docker's compose helpers (``get_docker_services``, with Debian's
``docker-compose`` pointed at the lab's manager) and awaited with its
``wait_until_responsive``. Each client runs for a bounded time and prints
its counts; nothing leaves the lab's own networks.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_docker.plugin import get_docker_services

COMPOSE_FILE = Path(__file__).with_name("load-clients.yml")
_RESULT = re.compile(r"RESULT sent=(\d+) ok=(\d+) non2xx=(\d+) conn=(\d+)")


@dataclass
class LoadResult:
    sent: int = 0
    ok: int = 0
    non2xx: int = 0
    connection_errors: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    #: Unix time (seconds) of every failed request.
    error_times: list[int] = field(default_factory=list)
    #: With ``bodies``: per client, (unix time, body) of each change of the body it got.
    bodies: list[list[tuple[int, str]]] = field(default_factory=list)

    def settled(self, body: str) -> int | None:
        """Unix time from which every client got only ``body`` (None: some did not end on it)."""
        times = []
        for changes in self.bodies:
            if not changes or changes[-1][1] != body:
                return None
            times.append(changes[-1][0])
        return max(times) if times else None

    @property
    def failed(self) -> int:
        return self.non2xx + self.connection_errors

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        return (
            f"{self.sent} requests in {self.seconds:.0f}s ({self.rate:.0f}/s): "
            f"{self.ok} 2xx, {self.non2xx} non-2xx, {self.connection_errors} connection "
            f"errors"
        )


def ensure_compose() -> str:
    """Debian's docker-compose (v1), installed if missing."""
    if shutil.which("docker-compose") is None:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "docker-compose"],
            check=True,
            capture_output=True,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
        )
    return "docker-compose"


@contextmanager
def load(
    client: Any,
    lab: Any,
    service: str,
    seconds: int,
    clients: int = 4,
    request_timeout: int = 0,
    rate: int = 320,
    bodies: bool = False,
) -> Iterator[LoadResult]:
    """Run the load clients for ``seconds`` while the body runs; the yielded
    result is filled in when the clients have finished. ``request_timeout``
    (seconds; 0: none, busybox wget has no timeout of its own) bounds each
    request, at the cost of one more process per request. ``rate`` caps the
    requests per second of all clients together: unthrottled, they take
    every cycle of 2 cores, which the nodes' daemons need too."""
    project = f"zddload{uuid.uuid4().hex[:8]}"
    env = {
        "DOCKER_HOST": lab.docker_host,
        "ZDD_LOAD_IMAGE": lab.image("v1"),
        "ZDD_LOAD_SERVICE": service,
        "ZDD_LOAD_SECONDS": str(seconds),
        "ZDD_LOAD_CLIENTS": str(clients),
        "ZDD_LOAD_NETWORK": lab.network,
        "ZDD_LOAD_TIMEOUT": str(request_timeout),
        "ZDD_LOAD_RATE": str(rate // clients),
        "ZDD_LOAD_BODIES": "1" if bodies else "",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    result = LoadResult()
    started = time.monotonic()
    try:
        with get_docker_services(
            ensure_compose(), str(COMPOSE_FILE), project, ["up -d"], ["down"]
        ) as services:

            def containers() -> list[Any]:
                return client.containers.list(
                    all=True, filters={"label": f"com.docker.compose.project={project}"}
                )

            services.wait_until_responsive(
                check=lambda: len(containers()) == clients, timeout=60.0, pause=0.5
            )
            yield result
            for container in containers():
                container.wait(timeout=seconds + 120)
                logs = container.logs().decode(errors="replace")
                match = _RESULT.search(logs)
                if match is None:
                    raise AssertionError(f"load client printed no result: {logs[-500:]}")
                sent, ok, non2xx, conn = map(int, match.groups())
                result.sent += sent
                result.ok += ok
                result.non2xx += non2xx
                result.connection_errors += conn
                failures = [ln for ln in logs.splitlines() if ln.startswith("ERR ")]
                result.errors += failures[:5]
                result.error_times += [
                    int(ln.split()[1]) for ln in failures if ln.split()[1].isdigit()
                ]
                changes = [ln.split(maxsplit=2) for ln in logs.splitlines() if ln[:5] == "BODY "]
                result.bodies.append([(int(p[1]), p[2].strip()) for p in changes if len(p) == 3])
            result.seconds = time.monotonic() - started
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
