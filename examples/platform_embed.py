"""Embedding zdd_swarm in a platform tool: several services rolled out one
after another, every event collected as structured data.

    python examples/platform_embed.py web=registry:5000/web:2 api=registry:5000/api:7

Stops at the first service that does not complete (the rest stay as they
are) and prints one JSON report: per service its outcome and its events.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import zdd_swarm
from zdd_swarm import Controller, DockerEngine, Outcome, RolloutOptions, ServiceChange, events


class EventLog:
    """A hook that keeps every event as a plain dict (what a platform stores)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def __call__(self, event: events.Event) -> None:
        self.records.append({"event": event.name, "service": event.service, **event.fields()})


def roll_out(releases: list[tuple[str, str]]) -> dict[str, Any]:
    log = EventLog()
    controller = Controller(
        DockerEngine(), hooks=[log], options=RolloutOptions(task_deadline="60s")
    )
    report: dict[str, Any] = {"services": [], "stopped_early": False}
    for service, image in releases:
        result = controller.update(service, ServiceChange(image=image))
        report["services"].append(
            {
                "service": service,
                "image": image,
                "outcome": result.outcome.value,
                "code": result.code,
                "duration_s": result.duration_s,
            }
        )
        if result.outcome is not Outcome.COMPLETED:
            report["stopped_early"] = True
            break
    report["events"] = log.records
    return report


def quiet_logging() -> None:
    """The library logs through the stdlib logger ``zdd_swarm`` and never
    configures it; an application does. Here: warnings and errors only, on
    stderr, one line each (docs/logging.md shows JSON)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str]) -> int:
    quiet_logging()
    releases = []
    for arg in argv:
        service, sep, image = arg.partition("=")
        if not sep:
            print(f"expected SERVICE=IMAGE, got {arg!r}", file=sys.stderr)
            return 2
        releases.append((service, image))
    try:
        report = roll_out(releases)
    except zdd_swarm.ZddError as exc:
        print(json.dumps({"error": str(exc)}))
        return 2 if isinstance(exc, zdd_swarm.InputError) else 5
    print(json.dumps(report, indent=2, default=str))
    return 1 if report["stopped_early"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
