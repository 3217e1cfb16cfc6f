"""The README demo: a good release rolled out, a bad one rolled back.

``python -m zdd_swarm.demo`` brings the local lab up if needed, deploys v1 of
the demo app (6 replicas over 3 nodes), rolls out v2 start-first with live
per-batch progress, then releases a build that crashes, which is rolled back
automatically, and ends with a short summary. Exit 0 when both went as
expected.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

import docker
from docker.types import EndpointSpec, RestartPolicy, ServiceMode, UpdateConfig
from rich.console import Console
from rich.table import Table

from .cli import configure_logging
from .config import Order
from .config import UpdateConfig as ZUpdateConfig
from .controller import Controller, RolloutOptions
from .display import ProgressDisplay, render_result
from .engine import DockerEngine
from .lab import Lab
from .result import Outcome, RolloutResult
from .spec import ServiceChange

SERVICE = "demo-web"


def deploy_v1(client: Any, lab: Lab, replicas: int, console: Console) -> None:
    """(Re)create the demo service at v1 and wait until every task runs."""
    for existing in client.services.list(filters={"name": SERVICE}):
        if existing.name == SERVICE:
            existing.remove()
            time.sleep(2)
    console.print(f"deploying {SERVICE} v1: {replicas} replicas")
    client.services.create(
        lab.image("v1"),
        name=SERVICE,
        networks=[lab.network],
        mode=ServiceMode("replicated", replicas=replicas),
        endpoint_spec=EndpointSpec(mode="dnsrr"),
        labels={"app": "demo"},
        env=["GREETING=hello"],
        restart_policy=RestartPolicy(condition="any", delay=1_000_000_000),
        update_config=UpdateConfig(
            parallelism=2,
            order="start-first",
            delay=1_000_000_000,
            monitor=5_000_000_000,
            failure_action="pause",
        ),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        tasks = client.api.tasks(filters={"service": SERVICE, "desired-state": "running"})
        running = [t for t in tasks if t["Status"]["State"] == "running"]
        if len(running) >= replicas:
            nodes = {t["NodeID"] for t in running}
            console.print(f"v1 is running: {len(running)} tasks on {len(nodes)} nodes")
            return
        time.sleep(1)
    raise SystemExit("demo: v1 did not come up within 120 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zdd_swarm.demo", description=__doc__)
    parser.add_argument("--replicas", type=int, default=6)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args(argv)
    console = Console(highlight=False)
    # Progress comes from ProgressDisplay; the event log shows only errors here.
    configure_logging("console", logging.ERROR)
    started = time.monotonic()
    lab = Lab(nodes=args.nodes)
    info = lab.up()
    console.print(
        f"lab up: {len(info.nodes)} nodes, registry {info.registry} "
        f"({time.monotonic() - started:.1f}s)"
    )
    client: Any = docker.DockerClient(base_url=lab.docker_host)
    deploy_v1(client, lab, args.replicas, console)

    controller = Controller(
        DockerEngine(lab.docker_host),
        hooks=[ProgressDisplay()],
        options=RolloutOptions(task_deadline="60s"),
    )
    results: list[tuple[str, RolloutResult]] = []
    console.rule("release v2 (good), start-first, parallelism 2")
    good = controller.update(
        SERVICE,
        ServiceChange(
            image=lab.image("v2"),
            update_config=ZUpdateConfig(
                parallelism=2, order=Order.START_FIRST, delay="1s", monitor="5s"
            ),
        ),
    )
    results.append(("v2", good))
    render_result(good, console)

    console.rule("release 'crash' (bad): rolled back automatically")
    bad = controller.update(SERVICE, ServiceChange(image=lab.image("crash")))
    results.append(("crash", bad))
    render_result(bad, console)

    table = Table(title="summary")
    for column in ("release", "outcome", "reason", "batches", "duration", "image now"):
        table.add_column(column)
    for release, result in results:
        table.add_row(
            release,
            result.outcome.value,
            result.reason.code,
            str(len(result.batches)),
            f"{result.duration_s:.1f}s",
            result.image_after,
        )
    console.print(table)
    ok = good.outcome is Outcome.COMPLETED and bad.outcome is Outcome.ROLLED_BACK
    console.print(
        f"demo {'OK' if ok else 'NOT as expected'} in "
        f"{time.monotonic() - started:.0f}s; the lab stays up "
        f"(`python -m zdd_swarm.lab down` removes it)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
