"""A blue-green operation whose process is gone, taken over by a watch
(``lease.py``, ``takeover.py``), on the fake engine in simulated time."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from zdd_swarm.bluegreen import BlueGreenOutcome, Colour, LabelRouter, follow
from zdd_swarm.bluegreen.lease import (
    LABEL_LEASE,
    LABEL_RENEWED,
    LEASE_TTL,
    Lease,
    LeaseState,
    lease_state,
)
from zdd_swarm.bluegreen.model import LABEL_LOCK, PairState
from zdd_swarm.bluegreen.store import read_pair, relabel, write_state
from zdd_swarm.bluegreen.takeover import Recovery, plan, take_over
from zdd_swarm.gates import CallableGate
from zdd_swarm.testing import FakeClock, FakeEngine

from .test_bluegreen_watch import pair

NOW = datetime(2026, 12, 7, 12, 0, 0)
DELAY = timedelta(seconds=30)
BLUE, GREEN = Colour.BLUE, Colour.GREEN


@pytest.mark.parametrize(
    ("state", "routed", "replicas", "expected"),
    [
        # a deploy died before its switch: the release that got no traffic goes
        (PairState(BLUE), BLUE, {BLUE: 2, GREEN: 2}, (BLUE, None, GREEN, None)),
        # it switched and died before recording it: kept, the way back kept up
        (PairState(BLUE), GREEN, {BLUE: 2, GREEN: 2}, (GREEN, None, None, NOW + DELAY)),
        # the router was between colours: back to the recorded one
        (PairState(BLUE), None, {BLUE: 2, GREEN: 2}, (BLUE, BLUE, GREEN, None)),
        # recorded and in its scale-down delay: as recorded
        (PairState(GREEN, None, NOW), GREEN, {BLUE: 2, GREEN: 2}, (GREEN, None, None, NOW)),
        # a colour awaiting promotion stays so
        (PairState(BLUE, GREEN), BLUE, {BLUE: 2, GREEN: 2}, (BLUE, None, None, None)),
        # nothing up but the active colour: nothing to undo
        (PairState(BLUE), BLUE, {BLUE: 2, GREEN: 0}, (BLUE, None, None, None)),
    ],
)
def test_a_takeover_keeps_the_traffic_where_it_is_and_removes_what_never_got_any(
    state: PairState,
    routed: Colour | None,
    replicas: dict[Colour, int],
    expected: tuple[Colour, Colour | None, Colour | None, datetime | None],
) -> None:
    recovery = plan(state, routed, replicas, NOW, DELAY)
    assert isinstance(recovery, Recovery) and recovery.said
    got = (recovery.active, recovery.switch_to, recovery.scale_down, recovery.scale_down_at)
    assert got == expected


def test_a_lease_is_live_while_renewed_expired_after_its_ttl_and_gone_at_the_end() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock)
    lock = f"0123456789ab {clock.now().isoformat()} deploy"
    assert lease_state(engine, lock, clock.now())[0] is LeaseState.NONE
    with Lease(engine, "web", "0123456789ab", clock, every=timedelta(milliseconds=10)) as lease:
        assert lease_state(engine, lock, clock.now())[0] is LeaseState.LIVE
        clock.sleep(LEASE_TTL.total_seconds())
        assert lease_state(engine, lock, clock.now())[0] is LeaseState.EXPIRED
        for _ in range(200):  # the renewal thread writes the clock's new time
            if lease_state(engine, lock, clock.now())[0] is LeaseState.LIVE:
                break
            lease._stop.wait(0.01)
        assert lease_state(engine, lock, clock.now())[0] is LeaseState.LIVE
    assert engine.list_objects("config", {LABEL_LEASE: "0123456789ab"}) == []


def test_an_operation_holds_a_lease_while_it_runs_and_none_after() -> None:
    clock = FakeClock()
    seen: list[int] = []
    engines: list[FakeEngine] = []

    def count() -> bool:
        seen.append(len(engines[0].list_objects("config", {})))
        return True

    gate = CallableGate(count, name="leases")
    engine, bg = pair(clock, scale_down_delay="1s", preview_window="2s", preview_checks=[gate])
    engines.append(engine)
    assert bg.deploy("web", "app:2").outcome is BlueGreenOutcome.SWITCHED
    assert seen and set(seen) == {1}
    assert engine.list_objects("config", {}) == []


def died(engine: FakeEngine, clock: FakeClock, operation: str) -> str:
    """The lock of a process that is gone: its lease last renewed 45 s ago."""
    owner = "0123456789ab"
    lock = f"{owner} {clock.now().isoformat()} {operation}"
    relabel(engine, "web-blue", {LABEL_LOCK: lock})
    renewed = (clock.now() - LEASE_TTL - timedelta(seconds=15)).isoformat()
    labels = {LABEL_LEASE: owner, LABEL_RENEWED: renewed}
    engine.create_object("config", {"Name": f"zdd-swarm-lease-{owner}", "Labels": labels})
    return lock


def awaiting(clock: FakeClock) -> tuple[FakeEngine, LabelRouter]:
    """``web`` with ``app:2`` up on green, awaiting promotion, the traffic on blue."""
    engine, bg = pair(clock, auto_promote=False, scale_down_delay="1m")
    assert bg.deploy("web", "app:2").outcome is BlueGreenOutcome.AWAITING_PROMOTE
    assert isinstance(bg.router, LabelRouter)
    return engine, bg.router


def test_a_watch_takes_over_a_deploy_that_died_before_its_switch() -> None:
    clock = FakeClock()
    engine, router = awaiting(clock)
    now = read_pair(engine, "web")
    write_state(engine, now, now.state.next(preview=None))  # a deploy in its preview
    died(engine, clock, "deploy")
    lines: list[str] = []
    seen = follow(engine, "web", clock=clock, on_change=lines.append, router=router)
    assert seen.outcome is BlueGreenOutcome.INTERRUPTED and seen.exit_code == 1
    assert (
        seen.code == "interrupted" and "the deploy of 0123456789ab stopped" in seen.reason.message
    )
    assert engine.inspect_service("web-green").replicas == 0
    assert engine.inspect_service("web-blue").replicas == 2
    after = read_pair(engine, "web")
    assert after.lock is None and after.state.active is BLUE
    assert any("taking it over; the traffic stays on blue" in line for line in lines)


def test_a_watch_records_a_switch_a_dead_process_made_and_keeps_the_way_back() -> None:
    clock = FakeClock()
    engine, router = awaiting(clock)
    router.switch(GREEN)  # the promote switched, and died before it recorded it
    died(engine, clock, "promote")
    now = read_pair(engine, "web")
    assert take_over(engine, now, router, clock, lambda _line: None)
    after = read_pair(engine, "web")
    assert after.state.active is GREEN and after.state.preview is None
    assert after.state.scale_down_at == clock.now() + timedelta(minutes=1)
    assert engine.inspect_service("web-blue").replicas == 2  # the way back, for its delay
    assert after.lock is None and engine.list_objects("config", {}) == []
    # a second watcher, with what it read before, finds it taken over
    assert not take_over(engine, now, router, clock, lambda _line: None)
    seen = follow(engine, "web", clock=clock, router=router)
    assert seen.outcome is BlueGreenOutcome.INTERRUPTED and seen.active is GREEN
    assert engine.inspect_service("web-blue").replicas == 0  # scaled down once overdue


def test_a_live_lease_is_never_taken_over() -> None:
    clock = FakeClock()
    engine, router = awaiting(clock)
    lock = f"0123456789ab {clock.now().isoformat()} promote"
    relabel(engine, "web-blue", {LABEL_LOCK: lock})
    with Lease(engine, "web", "0123456789ab", clock):  # it renews: alive after all
        seen = follow(engine, "web", clock=clock, router=router, timeout="10s")
    assert seen.outcome is BlueGreenOutcome.IN_FLIGHT and seen.code == "watch_timeout"
    assert read_pair(engine, "web").lock == lock
