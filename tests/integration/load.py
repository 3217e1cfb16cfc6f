"""Traffic through Swarm's own discovery, for zero-downtime checks.

Client containers (the lab image's busybox) on the lab's attachable overlay
resolve the dnsrr service before every request (``nslookup``: the embedded
DNS lists only RUNNING, healthy tasks), pick one address at random and GET
it. Each client runs for a bounded time and prints its counts; nothing
leaves the lab's own networks.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from typing import Any

CLIENT = r"""
end=$(( $(date +%s) + DURATION ))
sent=0; ok=0; non2xx=0; conn=0; nodns=0
while [ "$(date +%s)" -lt "$end" ]; do
  ips=$(nslookup SERVICE 2>/dev/null | sed -n '/^Name:/,$ s/^Address[^:]*: *\([0-9.]*\).*/\1/p')
  set -- $ips
  if [ $# -eq 0 ]; then nodns=$((nodns+1)); sent=$((sent+1)); conn=$((conn+1)); continue; fi
  shift $(( RANDOM % $# ))
  sent=$((sent+1))
  if out=$(wget -q -T 3 -O - "http://$1:8080/" 2>&1); then ok=$((ok+1));
  else case "$out" in
    *HTTP/*) non2xx=$((non2xx+1));;
    *) conn=$((conn+1)); echo "ERR $1 $out";;
  esac; fi
done
echo "RESULT sent=$sent ok=$ok non2xx=$non2xx conn=$conn nodns=$nodns"
"""

_RESULT = re.compile(r"RESULT sent=(\d+) ok=(\d+) non2xx=(\d+) conn=(\d+) nodns=(\d+)")


@dataclass
class LoadResult:
    sent: int = 0
    ok: int = 0
    non2xx: int = 0
    connection_errors: int = 0
    seconds: float = 0.0
    errors: tuple[str, ...] = ()

    @property
    def failed(self) -> int:
        return self.non2xx + self.connection_errors

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        return (f"{self.sent} requests in {self.seconds:.0f}s ({self.rate:.0f}/s): "
                f"{self.ok} 2xx, {self.non2xx} non-2xx, {self.connection_errors} connection "
                f"errors")


class Load:
    """Start ``clients`` load containers for ``duration`` seconds; ``wait()``
    collects their counts."""

    def __init__(self, client: Any, lab: Any, service: str, duration: int = 60,
                 clients: int = 4) -> None:
        self.client = client
        self.containers: list[Any] = []
        script = CLIENT.replace("DURATION", str(duration)).replace("SERVICE", service)
        self.started = time.monotonic()
        for _ in range(clients):
            self.containers.append(client.containers.run(
                lab.image("v1"), entrypoint=["/bin/sh", "-c", script], network=lab.network,
                detach=True, labels={"zdd.lab.load": service}, healthcheck={"Test": ["NONE"]}))

    def wait(self, timeout: float = 300) -> LoadResult:
        total = LoadResult()
        errors: list[str] = []
        try:
            for container in self.containers:
                container.wait(timeout=timeout)
                logs = container.logs().decode(errors="replace")
                match = _RESULT.search(logs)
                if match is None:
                    raise AssertionError(f"load client printed no result: {logs[-500:]}")
                sent, ok, non2xx, conn, _ = map(int, match.groups())
                total.sent += sent
                total.ok += ok
                total.non2xx += non2xx
                total.connection_errors += conn
                errors += [line for line in logs.splitlines() if line.startswith("ERR")][:5]
        finally:
            self.remove()
        total.seconds = time.monotonic() - self.started
        total.errors = tuple(errors)
        return total

    def remove(self) -> None:
        for container in self.containers:
            with contextlib.suppress(Exception):
                container.remove(force=True)
        self.containers = []
