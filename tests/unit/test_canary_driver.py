"""The canary driver on the fake engine, in simulated time: Swarm held at
each step, released at the next, and the original spec restored on abort."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import pytest

from zdd_swarm.canary.analysis import MeasurementFailed, Metric, QueryContext
from zdd_swarm.canary.driver import HOLD, Canary, CanaryOutcome
from zdd_swarm.canary.spec import CanarySpec
from zdd_swarm.canary.steps import parse_steps
from zdd_swarm.config import UpdateConfig
from zdd_swarm.errors import ConfigError, MetricQueryError, StepError, UnsupportedServiceMode
from zdd_swarm.spec import ServiceChange
from zdd_swarm.testing import FakeClock, FakeEngine, ImageBehaviour

from .test_canary_analysis import Script


@pytest.fixture
def engine(clock: FakeClock) -> FakeEngine:
    engine = FakeEngine(clock)
    config = UpdateConfig(parallelism=2, delay="1s", monitor="2s", order="start-first")
    engine.add_service("web", "app:1", replicas=10, update_config=config)
    engine.behave("app:crash", ImageBehaviour(fail_after=1.0))
    return engine


def images(engine: FakeEngine) -> list[str]:
    service = engine.inspect_service("web")
    return sorted(
        t.image
        for t in engine.list_tasks(service.id)
        if t.state.value == "running" and t.desired_state.value == "running"
    )


def canary(
    engine: FakeEngine,
    clock: FakeClock,
    steps: Iterable[str],
    analyses: dict[str, tuple[Metric, ...]] | None = None,
) -> Canary:
    analyses = analyses or {}
    spec = CanarySpec(parse_steps(steps, analyses), analyses)
    return Canary(engine, spec, clock=clock, poll_interval=0.5, step_timeout=60)


def test_each_weight_holds_swarm_at_its_task_count(engine: FakeEngine, clock: FakeClock) -> None:
    seen: list[list[str]] = []

    class Watch:
        def measure(self, context: QueryContext) -> Any:
            seen.append(images(engine))
            assert context == QueryContext("web", "app:1", "app:2")
            return [0.0]

    watch = (Metric("watch", Watch(), success_condition="result[0] < 1"),)
    driver = canary(
        engine,
        clock,
        ["10%", "pause=5m", "analysis=watch", "30%", "analysis=watch", "100%"],
        {"watch": watch},
    )
    result = driver.run("web", "app:2")
    assert result.outcome is CanaryOutcome.COMPLETED, result.reason
    # check_metrics measured once before anything changed, then each analysis
    assert [s.count("app:2") for s in seen] == [0, 1, 3]
    assert images(engine) == ["app:2"] * 10
    spec = engine.inspect_service("web").spec
    # the service ends with its own update config, not the holding one
    assert UpdateConfig.from_api(spec["UpdateConfig"]).parallelism == 2
    held = [u for u in engine.updates if u[1] == "update"]
    assert len(held) == 3  # 1 task, 3 tasks, then the rest


def test_no_two_releases_send_the_same_spec(engine: FakeEngine, clock: FakeClock) -> None:
    # 10 % and 20 % of 10 both add one task: the same parallelism, so only the
    # delay tells the second release from the first (swarmkit's Supervisor.Update
    # keeps an updater whose spec is DeepEqual to the new one)
    configs: list[Any] = []
    original = engine.update_service

    def record(service: Any, spec: Any, **kwargs: Any) -> list[str]:
        configs.append(spec["UpdateConfig"])
        return original(service, spec, **kwargs)

    engine.update_service = record  # type: ignore[method-assign]
    driver = canary(engine, clock, ["10%", "pause=1m", "20%", "pause=1m", "100%"])
    assert driver.run("web", "app:2").outcome is CanaryOutcome.COMPLETED
    assert [c["Parallelism"] for c in configs] == [1, 1, 2]  # the last: its own config
    assert len({c["Delay"] for c in configs}) == 3


def test_any_change_of_the_tasks_can_be_a_canary(engine: FakeEngine, clock: FakeClock) -> None:
    change = ServiceChange(env_add={"FEATURE": "on"})
    result = canary(engine, clock, ["10%", "pause=1m", "100%"]).run("web", change)
    assert result.outcome is CanaryOutcome.COMPLETED
    spec = engine.inspect_service("web").spec
    assert "FEATURE=on" in spec["TaskTemplate"]["ContainerSpec"]["Env"]


def test_the_holding_config(engine: FakeEngine, clock: FakeClock) -> None:
    driver = canary(engine, clock, ["20%", "pause=1m", "100%"])
    specs: list[Any] = []
    original = engine.update_service

    def record(service: Any, spec: Any, **kwargs: Any) -> list[str]:
        specs.append(UpdateConfig.from_api(spec["UpdateConfig"]))
        return original(service, spec, **kwargs)

    engine.update_service = record  # type: ignore[method-assign]
    assert driver.run("web", "app:2").outcome is CanaryOutcome.COMPLETED
    assert (specs[0].parallelism, specs[0].order.value) == (2, "start-first")
    assert specs[0].delay == HOLD + timedelta(seconds=2)
    assert specs[0].failure_action.value == "pause"
    assert specs[1] == UpdateConfig(parallelism=2, delay="1s", monitor="2s", order="start-first")


def test_a_failed_analysis_restores_the_original_spec(engine: FakeEngine, clock: FakeClock) -> None:
    before = engine.inspect_service("web").spec
    errors = (
        Metric(
            "error-ratio",
            Script([[0.0], [0.2], [0.3]]),
            success_condition="result[0] < 0.05",
            interval="10s",
            count=3,
            failure_limit=1,
        ),
    )
    driver = canary(engine, clock, ["10%", "analysis=errors", "100%"], {"errors": errors})
    result = driver.run("web", "app:2")
    assert result.outcome is CanaryOutcome.ROLLED_BACK
    assert result.failed_step == 1
    assert "failed (2) > failure_limit (1)" in result.reason and "[0.3]" in result.reason
    assert images(engine) == ["app:1"] * 10
    after = engine.inspect_service("web").spec
    assert after["UpdateConfig"] == before["UpdateConfig"]
    assert after["TaskTemplate"] == before["TaskTemplate"]


def test_a_crashing_canary_task_aborts(engine: FakeEngine, clock: FakeClock) -> None:
    result = canary(engine, clock, ["10%", "pause=1m", "100%"]).run("web", "app:crash")
    assert result.outcome is CanaryOutcome.ROLLED_BACK
    assert result.failed_step in (0, 1) and ("paused" in result.reason or "failed" in result.reason)
    assert set(images(engine)) == {"app:1"}


def test_a_canary_task_failing_during_a_passing_analysis_aborts(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.behave("app:late", ImageBehaviour(fail_after=30.0))
    fine = (
        Metric(
            "fine",
            Script([[0.0]] * 4),
            success_condition="result[0] < 1",
            interval="30s",
            count=3,
        ),
    )
    driver = canary(engine, clock, ["10%", "analysis=fine", "100%"], {"fine": fine})
    result = driver.run("web", "app:late")
    assert result.outcome is CanaryOutcome.ROLLED_BACK and result.failed_step == 2
    assert result.steps[1].analysis is not None and result.steps[1].analysis
    assert set(images(engine)) == {"app:1"}


def test_an_interrupted_canary_restores_the_original(engine: FakeEngine, clock: FakeClock) -> None:
    class Interrupt:
        calls = 0

        def measure(self, context: QueryContext) -> Any:
            self.calls += 1
            if self.calls > 1:  # the first is check_metrics, before anything is sent
                raise KeyboardInterrupt
            return [0.0]

    stop = (Metric("stop", Interrupt(), success_condition="result[0] < 1"),)
    driver = canary(engine, clock, ["10%", "analysis=stop", "100%"], {"stop": stop})
    result = driver.run("web", "app:2")
    assert result.outcome is CanaryOutcome.ROLLED_BACK and result.failed_step == 1
    assert "interrupted" in result.reason
    assert set(images(engine)) == {"app:1"}


def test_bad_input_changes_nothing(engine: FakeEngine, clock: FakeClock) -> None:
    refused = (
        Metric(
            "e",
            Script([MeasurementFailed("Prometheus refused the query")]),
        ),
    )
    with pytest.raises(MetricQueryError):
        canary(engine, clock, ["10%", "analysis=e", "100%"], {"e": refused}).run("web", "app:2")
    with pytest.raises(StepError, match="at most the service's 10 replicas"):
        canary(engine, clock, ["11", "100%"]).run("web", "app:2")
    with pytest.raises(ConfigError, match="a change of the tasks"):
        canary(engine, clock, ["10%", "100%"]).run("web", "app:1")
    engine.add_service("agent", "app:1", replicas=2, extra={"Mode": {"Global": {}}})
    with pytest.raises(UnsupportedServiceMode):
        canary(engine, clock, ["100%"]).run("agent", "app:2")
    assert engine.updates == []


def test_a_rollback_after_a_completed_canary_is_refused_before_anything_is_sent(
    engine: FakeEngine, clock: FakeClock
) -> None:
    # the engine's previous spec is the last step's: the new release, held
    from zdd_swarm.controller import Controller
    from zdd_swarm.errors import InputError

    result = canary(engine, clock, ["50%", "100%"]).run("web", "app:2")
    assert result.outcome is CanaryOutcome.COMPLETED, result.reason
    sent = list(engine.updates)
    with pytest.raises(InputError, match="canary step's"):
        Controller(engine, clock=clock).rollback("web")
    assert engine.updates == sent
    assert images(engine) == ["app:2"] * 10


def test_a_canary_tells_its_hooks_as_a_rolling_update_does(
    engine: FakeEngine, clock: FakeClock
) -> None:
    from zdd_swarm import events

    seen: list[Any] = []
    bad = (Metric("errors", Script([[0.0], [0.3]]), success_condition="result[0] < 0.05"),)
    spec = CanarySpec(parse_steps(["10%", "analysis=errors", "100%"], {"errors"}), {"errors": bad})
    driver = Canary(engine, spec, clock=clock, poll_interval=0.5, hooks=[seen.append])
    result = driver.run("web", "app:2")
    assert result.outcome is CanaryOutcome.ROLLED_BACK
    names = [e.name for e in seen if not isinstance(e, events.Progress)]
    assert names == [
        "rollout_started",
        "canary_step",
        "canary_step",
        "threshold_crossed",
        "rollback_started",
        "rollout_finished",
    ]
    steps = [(e.index, e.total, e.step) for e in seen if isinstance(e, events.CanaryStep)]
    assert steps == [(0, 3, "10%"), (1, 3, "analysis errors")]
    finished = seen[-1]
    assert (finished.outcome, finished.code) == ("rolled_back", "analysis_failed")
    assert "0.3" in finished.reason
    assert any(isinstance(e, events.Progress) and e.running == 1 for e in seen)
