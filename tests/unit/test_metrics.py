"""The Prometheus hook: series fed by the controller's events, in simulated time."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from zdd_swarm import Controller, RolloutOptions, ServiceChange, UpdateConfig, events
from zdd_swarm.errors import ConfigError
from zdd_swarm.metrics import REASON_CODES, PrometheusHook, check_textfile, push, write_textfile
from zdd_swarm.testing import FakeClock, FakeEngine, ImageBehaviour

DOCS = Path(__file__).parents[2] / "docs"


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def run(
    engine: FakeEngine,
    clock: FakeClock,
    image: str,
    *hooks: Any,
    registry: CollectorRegistry | None = None,
    **options: Any,
) -> CollectorRegistry:
    registry = registry or CollectorRegistry()
    controller = Controller(
        engine,
        clock=clock,
        hooks=[PrometheusHook(registry), *hooks],
        options=RolloutOptions(**options),
    )
    controller.update("web", ServiceChange(image=image))
    return registry


def test_a_good_rollout_counts_its_outcome_duration_and_batches(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1", replicas=4, update_config=UpdateConfig(parallelism=2))
    registry = run(engine, clock, "app:2")
    labels = {"service": "web", "outcome": "completed", "code": "update_completed"}
    assert value(registry, "zdd_swarm_rollouts_total", **labels) == 1
    assert value(registry, "zdd_swarm_batches_total", service="web", phase="update") == 2
    duration = value(
        registry, "zdd_swarm_rollout_duration_seconds_sum", service="web", outcome="completed"
    )
    assert duration is not None and duration > 0
    assert value(registry, "zdd_swarm_rollbacks_total", service="web", by="zdd_swarm") is None
    # ended: no phase in flight
    for phase in ("update", "rollback"):
        assert value(registry, "zdd_swarm_rollout_phase", service="web", phase=phase) == 0
    ended = value(
        registry,
        "zdd_swarm_rollout_last_finished_timestamp_seconds",
        service="web",
        outcome="completed",
    )
    assert ended == pytest.approx(clock.now().timestamp())


def test_a_crash_counts_the_rollback_by_its_code_and_the_verdict_latency(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1", replicas=4, update_config=UpdateConfig(parallelism=2))
    engine.behave("app:crash", ImageBehaviour(fail_after=1.0))
    registry = run(engine, clock, "app:crash")
    assert (
        value(
            registry,
            "zdd_swarm_rollouts_total",
            service="web",
            outcome="rolled_back",
            code="task_failed",
        )
        == 1
    )
    assert (
        value(
            registry, "zdd_swarm_rollbacks_total", service="web", by="zdd_swarm", code="task_failed"
        )
        == 1
    )
    assert value(registry, "zdd_swarm_verdict_latency_seconds_count", service="web") == 1
    assert (
        value(
            registry, "zdd_swarm_task_failures_total", service="web", phase="update", cause="failed"
        )
        == 2
    )
    assert value(registry, "zdd_swarm_batches_total", service="web", phase="rollback") == 2


def test_the_phase_gauge_follows_a_rollout_in_flight(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web", "app:1", replicas=2, update_config=UpdateConfig(parallelism=1))
    engine.behave("app:crash", ImageBehaviour(fail_after=1.0))
    registry = CollectorRegistry()
    seen: list[tuple[str, float | None, float | None, float | None]] = []

    def snapshot(event: events.Event) -> None:
        seen.append(
            (
                event.name,
                value(registry, "zdd_swarm_rollout_phase", service="web", phase="update"),
                value(registry, "zdd_swarm_rollout_phase", service="web", phase="rollback"),
                value(registry, "zdd_swarm_rollout_batch", service="web"),
            )
        )

    run(engine, clock, "app:crash", snapshot, registry=registry)
    by_name = {name: (update, rollback, batch) for name, update, rollback, batch in seen}
    assert by_name["rollout_started"] == (1, 0, 0)
    assert seen[1] == ("batch_started", 1, 0, 1)
    assert by_name["rollback_started"][:2] == (0, 1)
    assert by_name["rollout_finished"] == (0, 0, 0)


def test_the_engines_own_rollback_is_counted_as_the_engines(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service(
        "web", "app:1", replicas=4, update_config=UpdateConfig(failure_action="rollback")
    )
    engine.behave("app:crash", ImageBehaviour(fail_after=0.5))
    registry = run(engine, clock, "app:crash", failure_action="continue")
    labels = {"service": "web", "by": "engine", "code": "engine_rolled_back"}
    assert value(registry, "zdd_swarm_rollbacks_total", **labels) == 1
    # our verdict (failure action continue) was the threshold crossed, timed once
    assert value(registry, "zdd_swarm_verdict_latency_seconds_count", service="web") == 1


def test_a_requested_rollback_counts_as_manual(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web", "app:1", replicas=2)
    registry = CollectorRegistry()
    controller = Controller(engine, clock=clock, hooks=[PrometheusHook(registry)])
    controller.update("web", ServiceChange(image="app:2"))
    controller.rollback("web")
    labels = {"service": "web", "by": "zdd_swarm", "code": "manual_rollback"}
    assert value(registry, "zdd_swarm_rollbacks_total", **labels) == 1
    labels = {"service": "web", "outcome": "completed", "code": "rollback_completed"}
    assert value(registry, "zdd_swarm_rollouts_total", **labels) == 1


def test_label_values_outside_the_fixed_sets_are_counted_as_other() -> None:
    registry = CollectorRegistry()
    hook = PrometheusHook(registry)
    hook(events.RolloutFinished("web", 3.0, "exploded", "made_up_code", "?"))
    assert value(registry, "zdd_swarm_rollouts_total", service="web", outcome="other", code="other")


def test_one_hook_per_registry() -> None:
    registry = CollectorRegistry()
    PrometheusHook(registry)
    with pytest.raises(ValueError):
        PrometheusHook(registry)
    PrometheusHook(CollectorRegistry())  # another registry is fine


def test_the_reason_codes_are_the_documented_ones() -> None:
    table = (DOCS / "gates-and-thresholds.md").read_text().split("## Reason codes", 1)[1]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE))
    assert documented
    assert documented | {"manual_rollback"} == REASON_CODES


def test_series_follow_prometheus_naming() -> None:
    registry = CollectorRegistry()
    PrometheusHook(registry)
    for family in registry.collect():
        assert family.name.startswith("zdd_swarm_")
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        if "seconds" in family.name or family.type == "histogram":
            assert family.name.endswith(("_seconds", "_timestamp_seconds"))


def test_textfile_is_written_whole_and_parses(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    hook = PrometheusHook(registry)
    hook(events.RolloutFinished("web", 3.0, "completed", "update_completed", "ok"))
    target = tmp_path / "zdd.prom"
    write_textfile(check_textfile(target), registry)
    families = {f.name: f for f in text_string_to_metric_families(target.read_text())}
    assert families["zdd_swarm_rollouts"].samples[0].value == 1
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left


@pytest.mark.parametrize("where", ["missing/zdd.prom", "."])
def test_a_textfile_path_that_cannot_be_written_is_refused(tmp_path: Path, where: str) -> None:
    with pytest.raises(ConfigError):
        check_textfile(tmp_path / where)


def test_a_push_to_a_closed_port_is_one_warning_never_an_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    registry = CollectorRegistry()
    PrometheusHook(registry)
    with capture_logs() as logs:
        warning = push(f"http://127.0.0.1:{port}", registry, timeout=2)
    assert warning is not None and "not pushed" in warning
    assert [e["event"] for e in logs] == ["pushgateway_unreachable"]
