"""Following a blue-green operation from another process.

Everything a watcher needs is in the pair's labels (``model.py``): the lock
while an operation switches the pair, a colour awaiting promotion, when the
old colour scales down, and the result of the last operation (``last``,
written before the lock is given back). A watch reads them every poll and
ends when nothing is in flight any more, with the last operation's result
and exit code; it changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from ..clock import Clock, SystemClock
from ..config import DurationLike, parse_duration
from ..engine import StackEngine
from ..errors import InputError, UpdateInProgress
from ..result import Reason
from .lease import RENEW_EVERY, hold
from .model import LABEL_LAST, BlueGreenCode, BlueGreenOutcome, BlueGreenResult, lock_fields
from .router import Router
from .store import Pair, read_pair, set_replicas, write_state
from .takeover import dead_lock, take_over

__all__ = ["OVERDUE_AFTER", "follow", "in_flight", "last_result"]

OVERDUE_AFTER = timedelta(seconds=60)
"""A scale-down this late, with no operation holding the pair, is taken as
one whose process died: a watch carries it out."""


def in_flight(pair: Pair) -> str | None:
    """What is in flight on the pair, in words (None: nothing)."""
    state = pair.state
    if pair.lock:
        operation = lock_fields(pair.lock)[2] or "an operation"
        return f"{operation} in flight (active {state.active.value})"
    if state.preview is not None:
        return f"{state.preview.service(pair.app)} awaits promotion (active {state.active.value})"
    if state.scale_down_at is not None:
        old = state.active.other.service(pair.app)
        return f"switched to {state.active.value}; {old} scales down at {state.scale_down_at:%T}"
    return None


def last_result(pair: Pair) -> BlueGreenResult | None:
    """The result of the pair's last operation, as recorded (newest copy)."""
    found = []
    for view in pair.services.values():
        text = (view.spec.get("Labels") or {}).get(LABEL_LAST) if view else None
        result = BlueGreenResult.from_record(text) if text else None
        if result is not None:
            found.append((view.version if view else 0, result))
    return max(found, key=lambda f: f[0])[1] if found else None


def follow(
    engine: StackEngine,
    app: str,
    *,
    clock: Clock | None = None,
    timeout: DurationLike | None = None,
    poll: DurationLike = timedelta(seconds=1),
    on_change: Callable[[str], None] = lambda _line: None,
    router: Router | None = None,
) -> BlueGreenResult:
    """Follow ``app`` until no operation is in flight; the last operation's result.

    ``on_change`` gets a line each time what is in flight changes. A colour
    awaiting promotion is in flight until it is promoted or discarded. A
    scale-down of the old colour overdue by ``OVERDUE_AFTER`` with no
    operation holding the pair (its process died) is carried out here; with
    ``router``, so is an operation whose lease expired (``takeover.py``).
    Ends with outcome ``in_flight`` (exit 3) when ``timeout`` passes first.
    ``InputError`` when nothing was ever done."""
    clock = clock or SystemClock()
    limit = parse_duration(timeout, "timeout") if timeout is not None else None
    every = parse_duration(poll, "poll").total_seconds()
    start = clock.monotonic()
    said, lease_at = "", start
    while True:
        pair = read_pair(engine, app)
        doing = in_flight(pair)
        if doing is not None and doing != said:
            on_change(doing)
        said = doing or said
        if doing is None:
            return _finished(pair)
        if _overdue(pair, clock) and _scale_down(engine, pair, clock, on_change):
            continue
        if pair.lock and clock.monotonic() >= lease_at:
            lease_at = clock.monotonic() + RENEW_EVERY.total_seconds()
            if _gone(engine, pair, router, clock, on_change):
                continue
        if limit is not None and clock.monotonic() - start >= limit.total_seconds():
            why = f"still in flight after {limit.total_seconds():g}s: {doing}"
            return _stopped(pair, BlueGreenCode.WATCH_TIMEOUT, why, clock, start)
        clock.sleep(every)


def _finished(pair: Pair) -> BlueGreenResult:
    result = last_result(pair)
    if result is None:
        raise InputError(
            f"{pair.app}: no blue-green operation in flight or recorded: nothing to watch"
        )
    return result


def _overdue(pair: Pair, clock: Clock) -> bool:
    due = pair.state.scale_down_at
    return not pair.lock and due is not None and clock.now() - due >= OVERDUE_AFTER


def _gone(
    engine: StackEngine,
    pair: Pair,
    router: Router | None,
    clock: Clock,
    on_change: Callable[[str], None],
) -> bool:
    """Take over the operation holding ``pair`` if its process is gone;
    whether it was taken over (without ``router``: said, not done)."""
    if router is not None:
        return take_over(engine, pair, router, clock, on_change)
    if dead_lock(engine, pair, clock) is not None:
        on_change(
            "the process holding the pair is gone (its lease expired), and the pair "
            "remembers no router to take its operation over with"
        )
    return False


def _scale_down(
    engine: StackEngine, pair: Pair, clock: Clock, on_change: Callable[[str], None]
) -> bool:
    """Scale the old colour to 0 as the process that switched ``pair`` would
    have: under the pair's lock, and only if its labels, read under the lock,
    still say what ``pair`` said (else another process acted: nothing to do).
    Whether it did."""
    try:
        with hold(engine, pair, "scale-down", clock) as (now, _held):
            if now.state != pair.state:
                return False
            old = now.state.active.other.service(now.app)
            due = now.state.scale_down_at
            assert due is not None
            on_change(
                f"{old} was due to scale down at {due:%T}: its process is gone; scaling it to 0"
            )
            set_replicas(engine, old, 0)
            write_state(engine, now, now.state.next(scale_down_at=None))
            return True
    except UpdateInProgress:
        return False  # another watcher or operation holds it: followed on the next poll


def _stopped(
    pair: Pair, code: BlueGreenCode, why: str, clock: Clock, start: float
) -> BlueGreenResult:
    state = pair.state
    return BlueGreenResult(
        pair.app,
        BlueGreenOutcome.IN_FLIGHT,
        Reason(code.value, why),
        state.active,
        state.preview or state.active,
        duration_s=round(clock.monotonic() - start, 3),
    )
