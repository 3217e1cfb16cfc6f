"""The CLI's metrics and notification flags, against the fake engine."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from zdd_swarm.cli import _Obj, cli
from zdd_swarm.testing import FakeClock, FakeEngine, ImageBehaviour


@pytest.fixture
def engine(clock: FakeClock) -> FakeEngine:
    engine = FakeEngine(clock)
    engine.add_service("web", "app:1", replicas=2)
    engine.behave("app:crash", ImageBehaviour(fail_after=1.0))
    return engine


def run(engine: FakeEngine, clock: FakeClock, *args: str) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(
        cli, [*args, "--json"], obj=_Obj(engine_factory=lambda host: engine, clock=clock)
    )
    return result.exit_code, json.loads(result.stdout), result.stderr


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def test_metrics_textfile_holds_the_rollouts_series(
    engine: FakeEngine, clock: FakeClock, tmp_path: Path
) -> None:
    target = tmp_path / "zdd.prom"
    code, data, _ = run(
        engine, clock, "update", "web", "--image", "app:crash", "--metrics-textfile", str(target)
    )
    assert code == 1 and data["outcome"] == "rolled_back"
    found = samples(target)
    key = (
        "zdd_swarm_rollouts_total",
        (("code", "task_failed"), ("outcome", "rolled_back"), ("service", "web")),
    )
    assert found[key] == 1
    rollbacks = (
        "zdd_swarm_rollbacks_total",
        (("by", "zdd_swarm"), ("code", "task_failed"), ("service", "web")),
    )
    assert found[rollbacks] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zdd.prom"]


@pytest.mark.parametrize("where", ["no/such/folder/zdd.prom", "."])
def test_a_textfile_that_cannot_be_written_is_refused_before_anything_is_sent(
    engine: FakeEngine, clock: FakeClock, tmp_path: Path, where: str
) -> None:
    version = engine.inspect_service("web").version
    code, data, _ = run(
        engine,
        clock,
        "update",
        "web",
        "--image",
        "app:2",
        "--metrics-textfile",
        str(tmp_path / where),
    )
    assert code == 2 and data["code"] == "invalid_input"
    assert "--metrics-textfile" in data["reason"]
    assert engine.updates == [] and engine.inspect_service("web").version == version


def test_an_unreachable_pushgateway_is_a_warning_and_changes_no_exit_code(
    engine: FakeEngine, clock: FakeClock
) -> None:
    gateway = f"http://127.0.0.1:{closed_port()}"
    code, data, stderr = run(
        engine, clock, "update", "web", "--image", "app:2", "--pushgateway", gateway
    )
    assert code == 0 and data["outcome"] == "completed"
    assert [w for w in data["warnings"] if "not pushed" in w]
    assert stderr.count("pushgateway_unreachable") == 1


def test_watch_and_rollback_take_the_same_flags(
    engine: FakeEngine, clock: FakeClock, tmp_path: Path
) -> None:
    run(engine, clock, "update", "web", "--image", "app:2")
    target = tmp_path / "rollback.prom"
    code, data, _ = run(engine, clock, "rollback", "web", "--metrics-textfile", str(target))
    assert code == 0 and data["code"] == "rollback_completed"
    key = (
        "zdd_swarm_rollbacks_total",
        (("by", "zdd_swarm"), ("code", "manual_rollback"), ("service", "web")),
    )
    assert samples(target)[key] == 1
    code, data, _ = run(engine, clock, "watch", "web", "--metrics-textfile", str(target))
    assert data["code"] == "already_rolled_back"
    key = (
        "zdd_swarm_rollouts_total",
        (("code", "already_rolled_back"), ("outcome", "rolled_back"), ("service", "web")),
    )
    assert samples(target)[key] == 1
    assert "--notify-webhook" in CliRunner().invoke(cli, ["watch", "--help"]).output
