"""Taking over a blue-green operation whose process is gone.

A deploy, promote or rollback holds the pair's lock and renews its lease
(``lease.py``) while it runs. When the lease has expired, the process is
gone and its operation stopped somewhere in the flow; a watch takes it over
and leaves the pair in a state that is safe and says what it is:

- the traffic stays where the router sends it: a takeover never moves it
  to a colour, except when the router sends it to neither (a switch cut
  short), where it goes back to the colour the pair's state names;
- a colour that never got traffic (a release the dead deploy brought up, or
  a standby a dead rollback scaled up before switching) is scaled to 0;
- a switch the dead process made but did not record is recorded, with the
  other colour kept up for the scale-down delay, the way back
  (``bluegreen rollback``), since the new colour's checks after the switch
  never ran to the end;
- a colour awaiting promotion stays so.

The decision (``plan``) is pure; ``take_over`` carries it out under a lock
of its own that replaces the dead one, and records the result (outcome
``interrupted``, exit 1: the operation did not finish).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..clock import Clock
from ..engine import StackEngine
from ..errors import UpdateInProgress
from ..result import Reason
from .lease import LeaseState, hold, lease_state, remove_lease
from .model import (
    SCALE_DOWN_DELAY,
    BlueGreenCode,
    BlueGreenOutcome,
    BlueGreenResult,
    Colour,
    PairState,
    lock_fields,
)
from .router import Router
from .store import Pair, record, set_replicas, write_state

__all__ = ["Recovery", "dead_lock", "plan", "take_over"]

SWITCH_WAIT = timedelta(seconds=30)
"""How long a takeover waits for the router to show a switch it makes."""


@dataclass(frozen=True)
class Recovery:
    """What a takeover does."""

    active: Colour
    """The colour the traffic stays on, recorded as active."""
    switch_to: Colour | None
    """The router sends traffic to neither colour: switched to this one."""
    scale_down: Colour | None
    """A colour that never got traffic: scaled to 0 now."""
    scale_down_at: datetime | None
    """When the colour that is not active scales down (the way back until then)."""
    said: str
    """What was found and done, in words."""


def plan(
    state: PairState,
    routed: Colour | None,
    replicas: Mapping[Colour, int],
    now: datetime,
    delay: timedelta,
) -> Recovery:
    """The takeover of a pair in ``state`` whose router sends traffic to
    ``routed`` (None: neither colour), its colours running ``replicas``."""
    switch_to = None if routed is not None else state.active
    active = routed or state.active
    other = active.other
    said = f"the traffic stays on {active.value}"
    if switch_to is not None:
        said = f"the router sent traffic to neither colour: switched back to {active.value}"
    if state.preview is other:
        awaits = f"{said}; {other.value} awaits promotion"
        return Recovery(active, switch_to, None, state.scale_down_at, awaits)
    if active is not state.active:
        due = now + delay
        return Recovery(
            active,
            None,
            None,
            due,
            f"the switch to {active.value} was made but not recorded, and its checks after "
            f"the switch did not run to the end; {other.value} stays up until {due:%T} "
            "(`bluegreen rollback` switches back)",
        )
    if state.scale_down_at is not None:
        return Recovery(
            active, switch_to, None, state.scale_down_at, f"{said}; {other.value} scales down"
        )
    if replicas.get(other, 0) > 0:
        return Recovery(
            active,
            switch_to,
            other,
            None,
            f"{said}; {other.value} never got traffic and is scaled to 0",
        )
    return Recovery(active, switch_to, None, None, said)


def dead_lock(engine: StackEngine, pair: Pair, clock: Clock) -> tuple[str, datetime] | None:
    """The pair's lock and when its lease was last renewed, if that lease has
    expired (its process is gone); None when no lock, or a live or no lease."""
    if not pair.lock:
        return None
    state, renewed = lease_state(engine, pair.lock, clock.now())
    if state is not LeaseState.EXPIRED or renewed is None:
        return None
    return pair.lock, renewed


def take_over(
    engine: StackEngine,
    pair: Pair,
    router: Router,
    clock: Clock,
    on_change: Callable[[str], None],
) -> bool:
    """Take over the operation of a process that is gone (``dead_lock``),
    under a lock that replaces its own; whether it did (False: the lease is
    live again, or another process took it over first)."""
    found = dead_lock(engine, pair, clock)
    if found is None:
        return False
    lock, renewed = found
    owner, _, operation = lock_fields(lock)
    operation = operation or "operation"
    try:
        with hold(engine, pair, "take-over", clock, replaces=lock) as (now, _held):
            delay = now.scale_down_delay or SCALE_DOWN_DELAY
            replicas = {c: v.replicas or 0 for c, v in now.services.items() if v is not None}
            recovery = plan(now.state, router.active(), replicas, clock.now(), delay)
            why = f"the {operation} of {owner} stopped (lease last renewed {renewed:%T})"
            on_change(f"{why}: taking it over; {recovery.said}")
            remove_lease(engine, lock)
            shown = _carry_out(engine, now, router, recovery, clock)
            record(engine, _result(now.app, recovery, f"{why}; {recovery.said}", shown))
    except UpdateInProgress:
        return False
    return True


def _result(app: str, recovery: Recovery, why: str, shown: bool) -> BlueGreenResult:
    outcome, code = BlueGreenOutcome.INTERRUPTED, BlueGreenCode.INTERRUPTED
    if not shown:
        outcome, code = BlueGreenOutcome.SWITCH_BACK_FAILED, BlueGreenCode.SWITCH_BACK_FAILED
        why += f"; the router did not show the switch within {SWITCH_WAIT.seconds}s"
    return BlueGreenResult(app, outcome, Reason(code.value, why), recovery.active, recovery.active)


def _carry_out(
    engine: StackEngine, pair: Pair, router: Router, recovery: Recovery, clock: Clock
) -> bool:
    """Carry ``recovery`` out; whether the router showed the switch it made, if any."""
    shown = True
    if recovery.switch_to is not None:
        router.switch(recovery.switch_to)
        end = clock.monotonic() + SWITCH_WAIT.total_seconds()
        while not (shown := router.switched(recovery.switch_to)) and clock.monotonic() < end:
            clock.sleep(1.0)
    if recovery.scale_down is not None:
        set_replicas(engine, recovery.scale_down.service(pair.app), 0)
    preview = pair.state.preview if pair.state.preview is not recovery.active else None
    state = pair.state.next(
        active=recovery.active, preview=preview, scale_down_at=recovery.scale_down_at
    )
    write_state(engine, pair, state)
    return shown
