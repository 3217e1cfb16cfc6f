"""The top-level commands on a blue-green app (``zdd-swarm promote web``
when ``web`` is the pair ``web-blue`` / ``web-green``), on the fake engine."""

from __future__ import annotations

import json
from typing import Any

import pytest

from zdd_swarm.testing import FakeClock, FakeEngine

ROUTE = "traefik.http.routers.web"


def zdd(engine: FakeEngine, clock: FakeClock, *args: str) -> tuple[int, Any]:
    """``zdd-swarm ARGS --json``: the exit code and the JSON it printed."""
    from click.testing import CliRunner

    from zdd_swarm.cli import _Obj, cli

    obj = _Obj(engine_factory=lambda host: engine, clock=clock)
    result = CliRunner().invoke(cli, [*args, "--json"], obj=obj)
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def paused(engine: FakeEngine, clock: FakeClock) -> FakeEngine:
    """The pair of ``web``, its release on green awaiting promotion."""
    engine.add_service("web-blue", "app:1", replicas=2, extra={"Labels": {f"{ROUTE}.rule": "x"}})
    deploy = ["bluegreen", "deploy", "web", "--image", "app:2", "--manual-promote"]
    code, data = zdd(engine, clock, *deploy, "--router", f"labels:{ROUTE}")
    assert code == 0 and data["outcome"] == "awaiting_promote", data
    return engine


def test_status_promote_watch_and_rollback_reach_the_pair(
    paused: FakeEngine, clock: FakeClock
) -> None:
    code, data = zdd(paused, clock, "status", "web")
    assert code == 0 and (data["active"], data["preview"], data["router"]) == (
        "blue",
        "green",
        "blue",
    )
    code, data = zdd(paused, clock, "promote", "web")
    assert code == 0 and data["outcome"] == "switched" and data["active"] == "green", data
    code, data = zdd(paused, clock, "watch", "web")
    assert code == 0 and data["code"] == "switched"
    code, data = zdd(paused, clock, "rollback", "web")
    assert code == 0 and data["code"] == "rolled_back" and data["active"] == "blue", data
    assert paused.inspect_service("web-blue").replicas == 2


def test_a_name_of_both_a_service_and_a_pair_is_refused(
    paused: FakeEngine, clock: FakeClock
) -> None:
    paused.add_service("web", "other:1", replicas=1)
    writes = len(paused.updates)
    for command in ("status", "promote", "watch", "rollback"):
        code, data = zdd(paused, clock, command, "web")
        assert code == 2, (command, data)
        assert "both a service and a blue-green app" in data["reason"]
        assert f"zdd-swarm bluegreen {command} web" in data["reason"]
    assert len(paused.updates) == writes
    assert paused.inspect_service("web-green").replicas == 2  # still awaiting promotion


def test_a_service_is_still_the_service(paused: FakeEngine, clock: FakeClock) -> None:
    paused.add_service("api", "api:1", replicas=1)
    code, data = zdd(paused, clock, "status", "api")
    assert code == 0 and data["service"] == "api" and data["canary"] is None
    code, data = zdd(paused, clock, "status", "web-green")  # a colour is a service too
    assert code == 0 and data["service"] == "web-green"
    code, data = zdd(paused, clock, "promote", "api")
    assert code == 2 and "canary" in data["reason"]


def test_a_colour_without_the_pair_labels_is_no_app(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web-blue", "app:1", replicas=1)
    code, data = zdd(engine, clock, "status", "web")
    assert code == 2 and "not found" in data["reason"], data


def test_promote_and_rollback_keep_the_scale_down_delay_of_the_deploy(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web-blue", "app:1", replicas=2, extra={"Labels": {f"{ROUTE}.rule": "x"}})
    deploy = ["bluegreen", "deploy", "web", "--image", "app:2", "--manual-promote"]
    zdd(engine, clock, *deploy, "--router", f"labels:{ROUTE}", "--scale-down-delay", "5m")
    code, data = zdd(engine, clock, "promote", "web")
    assert code == 0 and data["duration_s"] >= 300, data
    code, data = zdd(engine, clock, "bluegreen", "rollback", "web", "--scale-down-delay", "1s")
    assert code == 0 and data["duration_s"] < 300, data
