"""Following a blue-green operation from another process (``follow``,
``zdd-swarm bluegreen watch``), on the fake engine in simulated time."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from zdd_swarm import Controller, InputError, RolloutOptions
from zdd_swarm.bluegreen import (
    BlueGreen,
    BlueGreenOptions,
    BlueGreenOutcome,
    Colour,
    LabelRouter,
    follow,
)
from zdd_swarm.bluegreen.model import LABEL_LOCK
from zdd_swarm.bluegreen.store import read_pair, relabel
from zdd_swarm.bluegreen.watch import _scale_down
from zdd_swarm.gates import CallableGate
from zdd_swarm.testing import FakeClock, FakeEngine

ROUTE = "traefik.http.routers.web"


class _Meanwhile(FakeClock):
    """A clock on which ``then`` runs once, at the first sleep of at least ``at`` seconds
    (another process acting while this one waits)."""

    then: Callable[[], Any] | None = None
    at: float = 0.0

    def sleep(self, seconds: float) -> None:
        if self.then is not None and seconds >= self.at:
            then, self.then = self.then, None
            self.result = then()
        super().sleep(seconds)


def pair(clock: FakeClock, **options: Any) -> tuple[FakeEngine, BlueGreen]:
    engine = FakeEngine(clock)
    labels = {"Labels": {f"{ROUTE}.rule": "Host(`web`)"}}
    engine.add_service("web-blue", "app:1", replicas=2, extra=labels)
    controller = Controller(engine, clock=clock)
    bg = BlueGreen(
        LabelRouter(engine, "web", [ROUTE]),
        controller,
        BlueGreenOptions(**options),
        RolloutOptions(task_deadline="30s"),
    )
    return engine, bg


def test_a_finished_operation_is_read_back_with_its_exit_code() -> None:
    clock = FakeClock()
    gate = CallableGate(lambda: False, name="errors")
    engine, bg = pair(clock, post_switch_checks=[gate], scale_down_delay="1s")
    done = bg.deploy("web", "app:2")
    seen = follow(engine, "web", clock=clock)
    assert seen.outcome is BlueGreenOutcome.SWITCHED_BACK and seen.exit_code == 1
    assert (seen.code, seen.reason, seen.active) == (done.code, done.reason, Colour.BLUE)
    assert seen.checks == done.checks and seen.steps == done.steps


def test_a_watch_follows_a_promotion_it_awaits() -> None:
    clock = _Meanwhile()
    engine, bg = pair(clock, auto_promote=False, scale_down_delay="1s")
    assert bg.deploy("web", "app:2").outcome is BlueGreenOutcome.AWAITING_PROMOTE
    clock.then = lambda: bg.promote("web")  # a person, at the watch's first sleep
    lines: list[str] = []
    seen = follow(engine, "web", clock=clock, on_change=lines.append)
    assert seen.outcome is BlueGreenOutcome.SWITCHED and seen.active is Colour.GREEN
    assert lines == ["web-green awaits promotion (active blue)"]


def test_a_watch_stops_at_its_timeout_with_exit_3() -> None:
    clock = _Meanwhile()
    clock.at = 3600
    engine, bg = pair(clock, scale_down_delay="1h")
    watched: list[Any] = []
    clock.then = lambda: watched.append(follow(engine, "web", clock=clock, timeout="10s"))
    assert bg.deploy("web", "app:2").outcome is BlueGreenOutcome.SWITCHED
    (seen,) = watched
    assert seen.outcome is BlueGreenOutcome.IN_FLIGHT and seen.exit_code == 3
    assert seen.code == "watch_timeout" and "web-blue scales down at" in seen.reason.message


def died_in_the_delay(clock: _Meanwhile, engine: FakeEngine, then: Callable[[], Any]) -> None:
    """Deploy ``web`` and let its process die in the scale-down delay (an hour):
    its delay passes and a minute more, nobody acts; then ``then`` runs."""

    def process_died() -> Any:
        clock.t += 3600 + 61
        return then()

    clock.at, clock.then = 3600, process_died


def test_a_watch_takes_over_the_scale_down_of_a_process_that_died() -> None:
    clock = _Meanwhile()
    engine, bg = pair(clock, scale_down_delay="1h")
    lines: list[str] = []
    died_in_the_delay(
        clock, engine, lambda: follow(engine, "web", clock=clock, on_change=lines.append)
    )
    bg.deploy("web", "app:2")
    seen = clock.result
    assert seen.outcome is BlueGreenOutcome.SWITCHED and seen.exit_code == 0
    assert engine.inspect_service("web-blue").replicas == 0
    assert engine.inspect_service("web-green").replicas == 2
    after = read_pair(engine, "web")
    assert after.state.scale_down_at is None and after.lock is None
    assert any("its process is gone; scaling it to 0" in line for line in lines)


def test_a_watch_leaves_a_pair_held_by_another_alone_until_its_timeout() -> None:
    clock = _Meanwhile()
    engine, bg = pair(clock, scale_down_delay="1h")

    def another_holds_it() -> Any:
        relabel(engine, "web-blue", {LABEL_LOCK: "0123abcd 2026-01-01T00:00:00 scale-down"})
        return follow(engine, "web", clock=clock, timeout="10s")

    died_in_the_delay(clock, engine, another_holds_it)
    bg.deploy("web", "app:2")
    seen = clock.result
    assert seen.outcome is BlueGreenOutcome.IN_FLIGHT and seen.exit_code == 3
    assert seen.code == "watch_timeout"
    assert engine.inspect_service("web-blue").replicas == 2


def test_of_two_watchers_only_the_first_scales_down() -> None:
    clock = _Meanwhile()
    engine, bg = pair(clock, scale_down_delay="1h")

    def two_watchers() -> Any:
        seen_by_both = read_pair(engine, "web")
        first = _scale_down(engine, seen_by_both, clock, lambda _line: None)
        second = _scale_down(engine, seen_by_both, clock, lambda _line: None)
        relabel(engine, "web-blue", {LABEL_LOCK: "0123abcd 2026-01-01T00:00:00 scale-down"})
        held = _scale_down(engine, seen_by_both, clock, lambda _line: None)
        return first, second, held

    died_in_the_delay(clock, engine, two_watchers)
    bg.deploy("web", "app:2")
    assert clock.result == (True, False, False)
    assert engine.inspect_service("web-blue").replicas == 0


def test_nothing_to_watch_is_bad_input() -> None:
    clock = FakeClock()
    engine, _ = pair(clock)
    with pytest.raises(InputError, match="nothing to watch"):
        follow(engine, "web", clock=clock)


def test_cli_watch_and_status_show_the_last_result() -> None:
    from click.testing import CliRunner

    from zdd_swarm.cli import _Obj, cli

    clock = FakeClock()
    engine, bg = pair(clock, scale_down_delay="1s")
    obj = _Obj(engine_factory=lambda host: engine, clock=clock)
    nothing = CliRunner().invoke(cli, ["bluegreen", "watch", "web", "--json"], obj=obj)
    assert nothing.exit_code == 2, nothing.output
    bg.deploy("web", "app:2")
    watched = CliRunner().invoke(cli, ["bluegreen", "watch", "web", "--json"], obj=obj)
    assert watched.exit_code == 0, watched.output
    assert json.loads(watched.stdout)["outcome"] == "switched"
    args = ["bluegreen", "status", "web", "--router", f"labels:{ROUTE}", "--json"]
    status = CliRunner().invoke(cli, args, obj=obj)
    assert json.loads(status.stdout)["last"]["code"] == "switched"
