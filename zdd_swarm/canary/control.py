"""Drive a canary in flight from any process: its status, ``promote``,
``abort``, ``watch`` (finish it after its controller died) and ``follow``
(wait for it to end, taking it over if its controller dies). They read the
record the canary keeps with its service (``record.py``)."""

from __future__ import annotations

from typing import Any

from ..clock import Clock, SystemClock
from ..engine import StackEngine
from ..errors import ConfigError, StepError, UpdateInProgress
from .driver import Canary, CanaryOutcome, CanaryResult
from .record import CanaryPhase, CanaryRecord, CanaryStore, Request
from .spec import CanarySpec, canary_from_data
from .steps import Pause, parse_step, parse_steps

__all__ = ["abort_canary", "canary_status", "follow_canary", "promote_canary", "watch_canary"]


def canary_status(engine: StackEngine, service: str) -> CanaryRecord | None:
    """The canary in flight on ``service``, or None."""
    found = CanaryStore(engine, service).read()
    return found[1] if found else None


def _in_flight(engine: StackEngine, service: str, clock: Clock | None = None) -> CanaryRecord:
    """The record, read again twice when missing: its owner replaces it by
    removing it and creating it again, so a read may fall in between."""
    clock = clock or SystemClock()
    for _ in range(2):
        record = canary_status(engine, service)
        if record is not None:
            return record
        clock.sleep(0.2)
    record = canary_status(engine, service)
    if record is None:
        raise UpdateInProgress(f"service {service!r}: no canary in flight")
    return record


def promote_canary(
    engine: StackEngine, service: str, *, clock: Clock | None = None
) -> CanaryRecord:
    """Ask the canary's controller to end its pause (a ``pause`` step, or a
    wait for a person after an inconclusive analysis). ``UpdateInProgress``
    if nothing waits for a promote."""
    record = _in_flight(engine, service, clock)
    at_pause = isinstance(parse_step(record.steps[record.step]), Pause)
    if record.phase is not CanaryPhase.PAUSED and not at_pause:
        raise UpdateInProgress(f"service {service!r}: nothing to promote ({record.describe()})")
    CanaryStore(engine, service).request(Request.PROMOTE)
    return record


def abort_canary(
    engine: StackEngine, service: str, *, clock: Clock | None = None, **options: Any
) -> CanaryResult | None:
    """Abort the canary: with its controller alive, ask it (None: it
    restores the original spec); with its heartbeat stale, take it over and
    restore the original spec here (the result). ``options`` go to
    ``Canary`` (``stale_after``, ``step_timeout``, ...)."""
    clock = clock or SystemClock()
    record = _in_flight(engine, service, clock)
    stale_after = float(options.get("stale_after", 30.0))
    if not record.stale(clock.now().timestamp(), stale_after):
        CanaryStore(engine, service).request(Request.ABORT)
        return None
    canary = Canary(engine, CanarySpec(parse_steps(record.steps)), clock=clock, **options)
    return canary.resume(service, abort="aborted on request")


def watch_canary(
    engine: StackEngine,
    service: str,
    spec: CanarySpec | None = None,
    *,
    clock: Clock | None = None,
    **options: Any,
) -> CanaryResult:
    """Finish the canary in flight on ``service`` once its controller is
    gone (heartbeat older than ``stale_after``), from the step it was at.
    Its steps and analyses come from its record, or from ``spec`` when the
    record has none (a canary started from Python, or with web headers)."""
    record = _in_flight(engine, service, clock)
    if spec is None:
        spec = _recorded_spec(record)
    return Canary(engine, spec, clock=clock, **options).resume(service)


def follow_canary(
    engine: StackEngine,
    service: str,
    spec: CanarySpec | None = None,
    *,
    clock: Clock | None = None,
    poll: float = 2.0,
    stale_after: float = 30.0,
    **options: Any,
) -> CanaryResult:
    """Wait for the canary in flight on ``service`` to end, and say how: its
    controller's record gone, the service runs the new release (completed)
    or the original (rolled back). If the controller dies on the way (no
    heartbeat for ``stale_after`` seconds), take the canary over and finish
    it here (``watch_canary``). ``UpdateInProgress`` if none is in flight."""
    clock = clock or SystemClock()
    record = _in_flight(engine, service, clock)
    while True:
        if record.stale(clock.now().timestamp(), stale_after):
            return watch_canary(
                engine, service, spec, clock=clock, stale_after=stale_after, **options
            )
        clock.sleep(poll)
        now = canary_status(engine, service)
        if now is None:
            return _ended(engine, record)
        record = now


def _ended(engine: StackEngine, record: CanaryRecord) -> CanaryResult:
    """How a canary whose record is gone ended, told by the release the
    service runs: its controller reported the reason, not to us."""
    image = engine.inspect_service(record.service).image
    if image == record.new_image:
        return CanaryResult(record.service, CanaryOutcome.COMPLETED, "completed", ())
    if image == record.old_image:
        why = "its controller put every task back on the original spec"
        return CanaryResult(record.service, CanaryOutcome.ROLLED_BACK, why, ())
    why = f"the service now runs {image}, neither release of the canary"
    return CanaryResult(record.service, CanaryOutcome.HANDED_OVER, why, ())


def _recorded_spec(record: CanaryRecord) -> CanarySpec:
    if record.spec is not None:
        return canary_from_data(dict(record.spec), "record")
    try:
        return CanarySpec(parse_steps(record.steps, {}))
    except StepError as exc:
        raise ConfigError(
            "steps file", None, "the canary's file: its analyses are not in its record"
        ) from exc
