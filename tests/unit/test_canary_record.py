"""A canary's state kept with the service, on the fake engine in simulated
time: status, promote, abort and watch from another controller, and the
lock that keeps two controllers from driving one canary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from zdd_swarm.canary import (
    CanaryPhase,
    abort_canary,
    canary_status,
    promote_canary,
    watch_canary,
)
from zdd_swarm.canary.analysis import Metric
from zdd_swarm.canary.driver import Canary, CanaryOutcome
from zdd_swarm.canary.providers import WebProvider
from zdd_swarm.canary.record import CanaryStore, LockLost, Request
from zdd_swarm.canary.spec import canary_from_data
from zdd_swarm.cli import _Obj, cli
from zdd_swarm.config import UpdateConfig
from zdd_swarm.errors import UpdateInProgress
from zdd_swarm.testing import FakeClock, FakeEngine

from .test_canary_analysis import Script
from .test_canary_driver import canary, images


class Killed(BaseException):
    """The controller's process dies (nothing in it runs any more)."""


def die() -> None:
    raise Killed


class HookClock(FakeClock):
    """Simulated time that runs ``hooks`` (time, action) once their time comes:
    what another process does meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.hooks: list[tuple[float, Callable[[], None]]] = []

    def at(self, seconds: float, action: Callable[[], None]) -> None:
        self.hooks.append((self.t + seconds, action))

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        due = [h for h in self.hooks if h[0] <= self.t]
        self.hooks = [h for h in self.hooks if h[0] > self.t]
        for _, action in due:
            action()


@pytest.fixture
def clock() -> HookClock:
    return HookClock()


@pytest.fixture
def engine(clock: HookClock) -> FakeEngine:
    engine = FakeEngine(clock)
    config = UpdateConfig(parallelism=2, delay="1s", monitor="2s", order="start-first")
    engine.add_service("web", "app:1", replicas=10, update_config=config)
    return engine


def test_a_pause_waits_for_promote_and_the_record_says_so(
    engine: FakeEngine, clock: HookClock
) -> None:
    seen: list[str] = []

    def look_then_promote() -> None:
        record = canary_status(engine, "web")
        assert record is not None and record.phase is CanaryPhase.PAUSED
        seen.append(record.describe())
        promote_canary(engine, "web")

    clock.at(600, look_then_promote)  # a pause without a duration has no end
    result = canary(engine, clock, ["10%", "pause", "100%"]).run("web", "app:2")
    assert result.outcome is CanaryOutcome.COMPLETED, result.reason
    assert seen == ["step 2 of 3 (10%), paused for approval"]
    assert [r.detail for r in result.steps][1] == "promoted"
    assert images(engine) == ["app:2"] * 10
    assert canary_status(engine, "web") is None  # the record goes with the canary
    assert engine.objects["config"] == {}


def test_promote_ends_a_timed_pause_early(engine: FakeEngine, clock: HookClock) -> None:
    clock.at(10, lambda: promote_canary(engine, "web"))
    result = canary(engine, clock, ["10%", "pause=1h", "100%"]).run("web", "app:2")
    assert result.outcome is CanaryOutcome.COMPLETED
    assert clock.t < 1000 + 600


def test_promote_without_a_pause_is_refused(engine: FakeEngine, clock: HookClock) -> None:
    refused: list[Exception] = []

    def promote() -> None:
        with pytest.raises(UpdateInProgress, match="nothing to promote") as info:
            promote_canary(engine, "web")
        refused.append(info.value)

    clock.at(0.5, promote)  # while the first tasks start
    result = canary(engine, clock, ["10%", "100%"]).run("web", "app:2")
    assert result.outcome is CanaryOutcome.COMPLETED and len(refused) == 1
    # no canary at all
    with pytest.raises(UpdateInProgress, match="no canary in flight"):
        promote_canary(engine, "web")


def test_abort_from_another_process_restores_the_original(
    engine: FakeEngine, clock: HookClock
) -> None:
    before = engine.inspect_service("web").spec
    clock.at(60, lambda: abort_canary(engine, "web", clock=clock))
    result = canary(engine, clock, ["30%", "pause", "100%"]).run("web", "app:2")
    assert result.outcome is CanaryOutcome.ROLLED_BACK and result.reason == "aborted on request"
    assert result.failed_step == 1
    assert images(engine) == ["app:1"] * 10
    assert engine.inspect_service("web").spec["UpdateConfig"] == before["UpdateConfig"]
    assert canary_status(engine, "web") is None


def test_an_inconclusive_analysis_waits_for_a_person(engine: FakeEngine, clock: HookClock) -> None:
    unsure = (
        Metric(
            "unsure",
            Script([[0.5]] * 2),
            success_condition="result[0] < 0.1",
            failure_condition="result[0] > 0.9",
        ),
    )
    reasons: list[str] = []

    def look_then_promote() -> None:
        record = canary_status(engine, "web")
        assert record is not None
        reasons.append(record.reason)
        assert record.analyses[-1]["phase"] == "inconclusive"
        promote_canary(engine, "web")

    clock.at(120, look_then_promote)
    driver = canary(engine, clock, ["10%", "analysis=unsure", "100%"], {"unsure": unsure})
    result = driver.run("web", "app:2")
    assert result.outcome is CanaryOutcome.COMPLETED
    assert "inconclusive" in reasons[0]


def test_watch_finishes_a_canary_whose_controller_died(
    engine: FakeEngine, clock: HookClock
) -> None:
    clock.at(20, die)
    with pytest.raises(Killed):
        canary(engine, clock, ["10%", "pause", "50%", "100%"]).run("web", "app:2")
    record = canary_status(engine, "web")
    assert record is not None and record.describe() == "step 2 of 4 (10%), paused for approval"
    # the heartbeat is fresh: the canary is still its owner's
    with pytest.raises(UpdateInProgress, match="driven by"):
        watch_canary(engine, "web", clock=clock)
    clock.sleep(31)
    clock.at(5, lambda: promote_canary(engine, "web"))
    result = watch_canary(engine, "web", clock=clock, poll_interval=0.5)
    assert result.outcome is CanaryOutcome.COMPLETED, result.reason
    assert [r.step for r in result.steps] == ["pause until promoted", "50%", "100%"]
    assert images(engine) == ["app:2"] * 10
    assert canary_status(engine, "web") is None


def test_watch_reads_the_analyses_from_the_record(
    engine: FakeEngine, clock: HookClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(WebProvider, "measure", lambda self, context: [0.0])
    web = {"url": "http://metrics.example/errors", "json_path": "$"}
    data = {
        "analyses": {"ok": [{"name": "ok", "web": web, "success_condition": "result[0] < 1"}]},
        "steps": ["10%", {"pause": None}, "analysis=ok", "100%"],
    }

    clock.at(20, die)
    with pytest.raises(Killed):
        Canary(engine, canary_from_data(data), clock=clock, poll_interval=0.5).run("web", "app:2")
    record = canary_status(engine, "web")
    assert record is not None and record.spec is not None
    assert record.spec["steps"] == ["10%", "pause", "analysis=ok", "100%"]
    clock.sleep(31)
    clock.at(5, lambda: promote_canary(engine, "web"))
    result = watch_canary(engine, "web", clock=clock, poll_interval=0.5)
    assert result.outcome is CanaryOutcome.COMPLETED, result.reason
    assert result.steps[1].analysis is not None and result.steps[1].analysis


def test_web_headers_stay_out_of_the_record(
    engine: FakeEngine, clock: HookClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(WebProvider, "measure", lambda self, context: [0.0])
    web = {"url": "http://metrics.example/errors", "headers": {"Authorization": "Bearer x"}}
    data = {"analyses": {"ok": {"web": web}}, "steps": ["10%", "pause", "100%"]}

    clock.at(20, die)
    with pytest.raises(Killed):
        Canary(engine, canary_from_data(data), clock=clock).run("web", "app:2")
    record = canary_status(engine, "web")
    assert record is not None and record.spec is None
    assert "Bearer" not in str(engine.objects["config"])


def test_abort_of_a_dead_controller_restores_here(engine: FakeEngine, clock: HookClock) -> None:
    clock.at(20, die)
    with pytest.raises(Killed):
        canary(engine, clock, ["30%", "pause", "100%"]).run("web", "app:2")
    clock.sleep(31)
    result = abort_canary(engine, "web", clock=clock, poll_interval=0.5)
    assert result is not None and result.outcome is CanaryOutcome.ROLLED_BACK
    assert images(engine) == ["app:1"] * 10
    assert canary_status(engine, "web") is None


def test_a_second_canary_on_the_service_is_refused(engine: FakeEngine, clock: HookClock) -> None:
    refused: list[str] = []

    def second() -> None:
        with pytest.raises(UpdateInProgress) as info:
            canary(engine, clock, ["10%", "100%"]).run("web", "app:3")
        refused.append(str(info.value))
        promote_canary(engine, "web")

    clock.at(10, second)
    result = canary(engine, clock, ["10%", "pause", "100%"]).run("web", "app:2")
    assert result.outcome is CanaryOutcome.COMPLETED and len(refused) == 1


def test_a_controller_whose_lock_was_taken_lets_go(engine: FakeEngine, clock: HookClock) -> None:
    def take_over() -> None:
        store = CanaryStore(engine, "web")
        found = store.read()
        assert found is not None
        record_id, record = found
        store.take_over(record_id, record.replace(owner="other"))

    clock.at(10, take_over)
    result = canary(engine, clock, ["10%", "pause", "100%"]).run("web", "app:2")
    assert result.outcome is CanaryOutcome.HANDED_OVER
    record = canary_status(engine, "web")
    assert record is not None and record.owner == "other"


def test_two_takers_of_a_stale_record_one_wins(engine: FakeEngine, clock: HookClock) -> None:
    clock.at(5, die)
    with pytest.raises(Killed):
        canary(engine, clock, ["10%", "pause", "100%"]).run("web", "app:2")
    first, second = CanaryStore(engine, "web"), CanaryStore(engine, "web")
    found = first.read()
    assert found is not None
    record_id, record = found
    first.take_over(record_id, record.replace(owner="first"))
    with pytest.raises(LockLost):
        second.take_over(record_id, record.replace(owner="second"))
    assert (canary_status(engine, "web") or record).owner == "first"


def test_requests_are_configs_of_their_own(engine: FakeEngine) -> None:
    store = CanaryStore(engine, "web")
    store.request(Request.ABORT)
    store.request(Request.ABORT)  # asking twice is asking once
    assert set(store.requests()) == {Request.ABORT}
    names = sorted(name for name, _, _ in engine.objects["config"].values())
    assert names == ["web_zdd-swarm-canary-abort"]


def run_cli(engine: FakeEngine, clock: FakeClock, *args: str) -> Any:
    obj = _Obj(engine_factory=lambda host: engine, clock=clock)
    return CliRunner().invoke(cli, list(args), obj=obj)


def test_the_canary_commands(engine: FakeEngine, clock: HookClock) -> None:
    outputs: list[str] = []

    def from_the_shell() -> None:
        outputs.append(run_cli(engine, clock, "canary", "status", "web").output)
        outputs.append(run_cli(engine, clock, "canary", "promote", "web").output)

    clock.at(30, from_the_shell)
    result = canary(engine, clock, ["10%", "pause", "100%"]).run("web", "app:2")
    assert result.outcome is CanaryOutcome.COMPLETED
    assert outputs == [
        "web: step 2 of 3 (10%), paused for approval\n",
        "web: promote requested at step 2 of 3 (10%), paused for approval\n",
    ]
    done = run_cli(engine, clock, "canary", "status", "web")
    assert done.exit_code == 0 and done.output == "web: no canary in flight\n"
    refused = run_cli(engine, clock, "canary", "promote", "web")
    assert refused.exit_code == 2


def test_an_abort_stops_a_running_analysis(engine: FakeEngine, clock: HookClock) -> None:
    slow = (
        Metric(
            "slow",
            Script([[0.0]] * 20),
            success_condition="result[0] < 1",
            interval="1m",
            count=10,
        ),
    )
    clock.at(90, lambda: abort_canary(engine, "web", clock=clock))
    driver = canary(engine, clock, ["10%", "analysis=slow", "100%"], {"slow": slow})
    result = driver.run("web", "app:2")
    assert result.outcome is CanaryOutcome.ROLLED_BACK and result.failed_step == 1
    assert clock.t < 1000 + 300  # not the analysis' ten minutes
    assert images(engine) == ["app:1"] * 10


def test_the_record_holds_the_analyses_so_far(engine: FakeEngine, clock: HookClock) -> None:
    fine = (Metric("fine", Script([[0.0]] * 3), success_condition="result[0] < 1"),)
    seen: list[Any] = []

    def look_then_promote() -> None:
        record = canary_status(engine, "web")
        assert record is not None
        seen.extend(record.analyses)
        promote_canary(engine, "web")

    clock.at(60, look_then_promote)
    steps = ["10%", "analysis=fine", "pause", "100%"]
    result = canary(engine, clock, steps, {"fine": fine}).run("web", "app:2")
    assert result.outcome is CanaryOutcome.COMPLETED
    assert [(a["step"], a["phase"]) for a in seen] == [(1, "successful")]
    assert seen[0]["metrics"][0]["value"] == [0.0]


def test_the_top_level_commands_reach_a_canary_in_flight(
    engine: FakeEngine, clock: HookClock
) -> None:
    # status shows it, promote ends its pause; rollback during the next
    # pause aborts it (the engine's rollback would go to the step before)
    outputs: list[str] = []

    def from_the_shell(*args: str) -> Callable[[], None]:
        return lambda: outputs.append(run_cli(engine, clock, *args).output)

    clock.at(30, from_the_shell("status", "web"))
    clock.at(31, from_the_shell("promote", "web"))
    clock.at(90, from_the_shell("rollback", "web"))
    result = canary(engine, clock, ["10%", "pause", "50%", "pause", "100%"]).run("web", "app:2")
    assert result.outcome is CanaryOutcome.ROLLED_BACK and result.failed_step == 3
    assert "  canary: step 2 of 5 (10%), paused for approval\n" in outputs[0]
    assert outputs[1:] == [
        "web: promote requested at step 2 of 5 (10%), paused for approval\n",
        "web: abort requested; its controller restores the original\n",
    ]
    assert images(engine) == ["app:1"] * 10


def test_the_library_will_not_watch_or_roll_back_a_held_canary(
    engine: FakeEngine, clock: HookClock
) -> None:
    from zdd_swarm.controller import Controller

    refused: list[str] = []

    def try_them() -> None:
        controller = Controller(engine, clock=clock)
        for attempt in (controller.watch, controller.rollback):
            with pytest.raises(UpdateInProgress, match="a canary holds its update") as info:
                attempt("web")
            refused.append(str(info.value))
        promote_canary(engine, "web")

    clock.at(30, try_them)
    result = canary(engine, clock, ["10%", "pause", "100%"]).run("web", "app:2")
    assert result.outcome is CanaryOutcome.COMPLETED and len(refused) == 2


def test_watch_follows_a_canary_and_takes_it_over_when_its_controller_dies(
    engine: FakeEngine, clock: HookClock
) -> None:
    clock.at(20, die)
    with pytest.raises(Killed):
        canary(engine, clock, ["10%", "pause=2m", "100%"]).run("web", "app:2")
    watched = run_cli(engine, clock, "watch", "web")
    assert watched.exit_code == 0, watched.output
    assert watched.output.startswith("web: canary completed")
    assert images(engine) == ["app:2"] * 10
