"""Drive one service through canary steps on Swarm's own updater.

No second service and no proxy: the new release replaces a share of the
service's tasks, and Swarm is held there between steps. How, in swarmkit
(``manager/orchestrator/update/updater.go``, ``manager/controlapi/service.go``):

- ``Updater.Run`` starts ``parallelism`` workers ("for range parallelism {
  wg.Go(func() { u.worker(ctx, slotQueue, updateConfig) })"), and each
  worker, once its slot's new task runs, sleeps the delay: "if
  updateConfig.Delay != 0 { select { case <-time.After(updateConfig.Delay):
  case <-u.stopChan: return } }". With parallelism N and a delay of a day,
  N slots are replaced and the slot loop then waits on "case slotQueue <-
  slot:" for a free worker: the update holds at N tasks. (The delay is a
  day plus the step's task count in seconds, so that no two releases
  send the same spec.)
- A new spec cancels that updater (``Supervisor.Update``: "if
  reflect.DeepEqual(service.Spec, update.newService.Spec) { return }" then
  "update.Cancel()") and starts a new one, which takes only the slots that
  are still dirty ("if u.isSlotDirty(slot)"): a change of ``UpdateConfig``
  alone leaves the replaced tasks clean, so the next release replaces the
  next N' slots and holds again.
- The last release carries the service's own update config, so Swarm
  finishes as in any update.
- Every update does "service.PreviousSpec = service.Spec.Copy()"
  (``UpdateService``): after the second release the previous spec is a
  canary's. So an abort sends the original spec, saved before the first
  release, rather than asking for the engine's rollback.

A failed analysis, a new task that fails, the engine pausing the update,
a step not reached in time or an ``abort`` request abort the canary: every
task back on the original spec. An analysis inconclusive or in error
pauses it for a person, as a ``pause`` without a duration does: a
``promote`` request goes on. The state lives with the service
(``zdd_swarm/canary/record.py``), so ``resume`` finishes a canary whose
process died.
"""

from __future__ import annotations

import copy
import enum
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .._logging import get_logger
from ..clock import Clock, SystemClock
from ..config import CANARY_HOLD, UpdateConfig
from ..engine import StackEngine
from ..errors import ConfigError, UnsupportedServiceMode, UpdateInProgress
from ..events import (
    CanaryStep,
    Event,
    Hook,
    Progress,
    RollbackStarted,
    RolloutFinished,
    RolloutStarted,
    ThresholdCrossed,
)
from ..model import TaskState, UpdateState, image_of, replicas_of, task_template_key
from ..spec import ServiceChange
from .analysis import (
    AnalysisResult,
    Metric,
    Phase,
    QueryContext,
    analysis_summary,
    run_analysis,
)
from .record import CanaryPhase, CanaryRecord, CanaryStore, LockLost, Request
from .spec import CanarySpec
from .steps import Analysis, Pause, SetWeight, Step, step_text

__all__ = ["HOLD", "Canary", "CanaryOutcome", "CanaryResult", "StepReport"]

log = get_logger()

HOLD = CANARY_HOLD
"""The delay that holds Swarm's updater between two steps."""


class CanaryOutcome(enum.StrEnum):
    """A canary's outcome, in the words of a rolling update's (``Outcome``)."""

    COMPLETED = "completed"
    """Every step passed; every task runs the new release."""
    ROLLED_BACK = "rolled_back"
    """Aborted at a step; every task is back on the original spec."""
    ROLLBACK_FAILED = "rollback_failed"
    """Aborted at a step, and the original spec did not come back in time."""
    HANDED_OVER = "handed_over"
    """Another controller took the canary over; this one let go."""


@dataclass(frozen=True)
class StepReport:
    """What one step did."""

    index: int
    step: str
    detail: str
    analysis: AnalysisResult | None = None


@dataclass(frozen=True)
class CanaryResult:
    service: str
    outcome: CanaryOutcome
    reason: str
    steps: tuple[StepReport, ...]
    failed_step: int | None = None


class _Abort(Exception):
    def __init__(self, index: int, reason: str, analysis: AnalysisResult | None = None) -> None:
        super().__init__(reason)
        self.index, self.reason, self.analysis = index, reason, analysis


@dataclass
class _Rollout:
    """One canary under way: what it started from, how far it went, and
    its record with the service."""

    service: str
    original: Mapping[str, Any]
    target: dict[str, Any]
    replicas: int
    context: QueryContext
    store: CanaryStore
    record: CanaryRecord
    released: int = 0
    new_key: str = ""
    beat_at: float = 0.0
    started: float = 0.0
    """when this process began driving it (``elapsed`` of its events)"""
    running: int = -1
    """new tasks running when last counted (a ``Progress`` event when it moves)"""
    version: int = 0


class _TickingClock:
    """The canary's clock for an analysis: sleeps in slices, and between
    them the driver beats and reads requests (an abort stops the analysis)."""

    def __init__(self, clock: Clock, slice_: float, tick: Callable[[], object]) -> None:
        self.clock, self.slice, self.tick = clock, slice_, tick

    def monotonic(self) -> float:
        return self.clock.monotonic()

    def now(self) -> datetime:
        return self.clock.now()

    def sleep(self, seconds: float) -> None:
        until = self.clock.monotonic() + seconds
        while (left := until - self.clock.monotonic()) > 0:
            self.clock.sleep(min(self.slice, left))
            self.tick()


def default_owner() -> str:
    """This process, as a lock owner: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Canary:
    """Runs ``spec`` (steps and analyses) on a service: ``run(service,
    change)``, or ``resume(service)`` for one whose controller died.

    ``heartbeat`` is how often the record is rewritten while the canary
    runs; ``stale_after`` how old a heartbeat must be before ``resume``
    takes the canary over from another controller."""

    def __init__(
        self,
        engine: StackEngine,
        spec: CanarySpec,
        *,
        clock: Clock | None = None,
        poll_interval: float = 1.0,
        step_timeout: float = 300.0,
        heartbeat: float = 5.0,
        stale_after: float = 30.0,
        owner: str | None = None,
        hooks: Sequence[Hook] = (),
    ) -> None:
        self.engine, self.spec = engine, spec
        self.hooks = list(hooks)
        self.clock = clock or SystemClock()
        self.poll_interval, self.step_timeout = poll_interval, step_timeout
        self.heartbeat, self.stale_after = heartbeat, stale_after
        self.owner = owner or default_owner()

    def run(self, service: str, change: ServiceChange | str) -> CanaryResult:
        """Release ``change`` (or a new image) to ``service`` step by step; bad
        input (steps, analyses, a query Prometheus refuses) raises
        ``InputError`` before anything is sent, and so does a canary
        already in flight on the service (``UpdateInProgress``)."""
        if isinstance(change, str):
            change = ServiceChange(image=change)
        rollout = self._prepare(service, change)
        try:
            rollout.store.create(rollout.record)
        except LockLost as exc:
            raise UpdateInProgress(
                f"service {rollout.service!r}: a canary is in flight (canary watch or abort)"
            ) from exc
        self._started(rollout, "update")
        return self._drive(rollout, 0)

    def resume(self, service: str, *, abort: str | None = None) -> CanaryResult:
        """Finish the canary in flight on ``service`` (its steps must be this
        spec's), from the step it was at; with ``abort``, restore the original
        spec for that reason instead. The owner's heartbeat must be older than
        ``stale_after``: else ``UpdateInProgress``, and the canary is its."""
        store = CanaryStore(self.engine, service)
        found = store.read()
        if found is None:
            raise UpdateInProgress(f"service {service!r}: no canary in flight")
        record_id, record = found
        age = self._wall() - record.heartbeat
        if not record.stale(self._wall(), self.stale_after):
            raise UpdateInProgress(
                f"service {service!r}: its canary is driven by {record.owner} (heartbeat "
                f"{age:.0f}s ago; taken over after {self.stale_after:g}s without one)"
            )
        if abort is None and [step_text(s) for s in self.spec.steps] != list(record.steps):
            raise ConfigError("steps", [step_text(s) for s in self.spec.steps], str(record.steps))
        record = record.replace(owner=self.owner, heartbeat=self._wall())
        store.take_over(record_id, record)
        log.info("canary_resumed", service=service, step=record.step, previous=age)
        rollout = self._attach(store, record)
        self._started(rollout, "watch")
        if abort is not None or record.phase is CanaryPhase.ABORTING:
            why = _Abort(record.step, abort or record.reason or "aborted")
            return self._finished(rollout, self._end_aborted(rollout, why, []))
        return self._drive(rollout, record.step, waiting=record.phase is CanaryPhase.PAUSED)

    # -- before anything is sent ----------------------------------------------

    def _prepare(self, service: str, change: ServiceChange) -> _Rollout:
        current = self.engine.inspect_service(service)
        replicas = replicas_of(current.spec)
        if replicas is None:
            raise UnsupportedServiceMode(f"service {current.name!r}: a canary needs replicas")
        if current.state in (UpdateState.UPDATING, UpdateState.ROLLBACK_STARTED):
            raise UpdateInProgress(f"service {current.name!r}: an update is in progress")
        if change.pin_digest:
            raise ConfigError("pin_digest", True, "not with a canary yet")
        target = change.apply(current.spec)
        if task_template_key(target.get("TaskTemplate") or {}) == current.task_key:
            raise ConfigError(
                "change", current.name, "a change of the tasks: a canary replaces tasks"
            )
        context = QueryContext(current.name, current.image, image_of(target))
        self.spec.check(replicas, context)
        original = copy.deepcopy(dict(current.spec))
        record = CanaryRecord(
            current.name,
            0,
            tuple(step_text(s) for s in self.spec.steps),
            CanaryPhase.RUNNING,
            replicas,
            0,
            original,
            target,
            context.old_image,
            context.new_image,
            self.owner,
            self._wall(),
            spec=_recordable(self.spec),
        )
        store = CanaryStore(self.engine, current.name)
        rollout = _Rollout(current.name, original, target, replicas, context, store, record)
        rollout.version = current.version
        return rollout

    def _attach(self, store: CanaryStore, record: CanaryRecord) -> _Rollout:
        context = QueryContext(record.service, record.old_image, record.new_image)
        rollout = _Rollout(
            record.service,
            record.original,
            dict(record.target),
            record.replicas,
            context,
            store,
            record,
            record.released,
        )
        if rollout.released:
            rollout.new_key = self.engine.inspect_service(record.service).task_key
        return rollout

    # -- events --------------------------------------------------------------------

    def _emit(self, rollout: _Rollout, kind: Callable[..., Event], *fields: Any) -> None:
        """An event to the hooks, as a rolling update's (a hook that raises
        is logged, never stops the canary)."""
        elapsed = round(self.clock.monotonic() - rollout.started, 3)
        event = kind(rollout.service, elapsed, *fields)
        for hook in self.hooks:
            try:
                hook(event)
            except Exception:
                log.exception("hook_failed", service=rollout.service, hook=repr(hook))

    def _started(self, rollout: _Rollout, phase: str) -> None:
        rollout.started = self.clock.monotonic()
        order = UpdateConfig.from_api(rollout.target.get("UpdateConfig")).order.value
        context = rollout.context
        self._emit(
            rollout,
            RolloutStarted,
            phase,
            context.old_image,
            context.new_image,
            rollout.version,
            rollout.replicas,
            0,
            order,
        )

    def _finished(self, rollout: _Rollout, result: CanaryResult) -> CanaryResult:
        """``RolloutFinished`` in the words of a rolling update's outcome."""
        last = result.steps[-1].analysis if result.steps else None
        outcome, code = {
            CanaryOutcome.COMPLETED: ("completed", "update_completed"),
            CanaryOutcome.ROLLED_BACK: ("rolled_back", _abort_code(last)),
            CanaryOutcome.ROLLBACK_FAILED: ("rollback_failed", "rollback_deadline"),
            CanaryOutcome.HANDED_OVER: ("superseded", "superseded"),
        }[result.outcome]
        self._emit(rollout, RolloutFinished, outcome, code, result.reason)
        return result

    # -- the record ----------------------------------------------------------------

    def _wall(self) -> float:
        return self.clock.now().timestamp()

    def _save(self, rollout: _Rollout, **changes: Any) -> None:
        """Rewrite the record (a heartbeat, with ``changes``)."""
        rollout.record = rollout.record.replace(heartbeat=self._wall(), **changes)
        rollout.store.write(rollout.record)
        rollout.beat_at = self.clock.monotonic()

    def _tick(self, rollout: _Rollout, index: int) -> set[Request]:
        """Beat when due, and read the requests: an abort raises ``_Abort``;
        returns the rest (a promote is consumed by a pause)."""
        if self.clock.monotonic() - rollout.beat_at >= self.heartbeat:
            self._save(rollout)
        requests = rollout.store.requests()
        if Request.ABORT in requests:
            rollout.store.consume(requests[Request.ABORT])
            raise _Abort(index, "aborted on request")
        return set(requests)

    def _promoted(self, rollout: _Rollout, index: int) -> bool:
        requests = rollout.store.requests()
        if Request.PROMOTE not in requests:
            return False
        rollout.store.consume(requests[Request.PROMOTE])
        log.info("canary_promoted", service=rollout.service, step=index)
        return True

    # -- steps ---------------------------------------------------------------------

    def _drive(self, rollout: _Rollout, start: int, waiting: bool = False) -> CanaryResult:
        return self._finished(rollout, self._steps(rollout, start, waiting))

    def _steps(self, rollout: _Rollout, start: int, waiting: bool) -> CanaryResult:
        reports: list[StepReport] = []
        reason = rollout.record.reason  # why a resumed canary waits for a person
        try:
            for index in range(start, len(self.spec.steps)):
                step = self.spec.steps[index]
                self._emit(rollout, CanaryStep, index, len(self.spec.steps), str(step))
                if waiting and index == start:
                    reports.append(self._wait_for_person(rollout, index, str(step), reason))
                    continue
                self._save(rollout, step=index, phase=CanaryPhase.RUNNING, reason="")
                reports.append(self._step(rollout, index, step))
            self._wait_done(rollout, len(self.spec.steps) - 1)
        except LockLost as lost:
            return CanaryResult(
                rollout.service, CanaryOutcome.HANDED_OVER, str(lost), tuple(reports)
            )
        except _Abort as abort:
            reports.append(StepReport(abort.index, "abort", abort.reason, abort.analysis))
            return self._end_aborted(rollout, abort, reports)
        except KeyboardInterrupt:
            # a held update left alone goes on one slot per worker and per
            # delay, unanalysed: with no one to drive it, restore the original
            interrupted = _Abort(
                rollout.record.step, "interrupted: no one would drive the canary on"
            )
            reports.append(StepReport(interrupted.index, "abort", interrupted.reason))
            return self._end_aborted(rollout, interrupted, reports)
        rollout.store.clear()
        return CanaryResult(
            service=rollout.service,
            outcome=CanaryOutcome.COMPLETED,
            reason="every step passed",
            steps=tuple(reports),
        )

    def _step(self, rollout: _Rollout, index: int, step: Step) -> StepReport:
        log.info("canary_step", service=rollout.service, index=index, step=str(step))
        if rollout.released:
            # a canary task that failed while nobody looked (an analysis, say)
            # still stops the canary: the next release would reset the status
            self._new_running(rollout, index)
        if isinstance(step, SetWeight):
            want = step.task_count(rollout.replicas)
            if want > rollout.released:
                self._release(rollout, want, index)
            return StepReport(index, str(step), f"{want} of {rollout.replicas} tasks")
        if isinstance(step, Pause):
            if step.duration is None:
                return self._wait_for_person(rollout, index, str(step), "")
            until = self.clock.monotonic() + step.duration.total_seconds()
            promoted = self._watch(rollout, index, until)
            return StepReport(index, str(step), "promoted" if promoted else "waited")
        return self._analysis(rollout, index, step)

    def _analysis(self, rollout: _Rollout, index: int, step: Analysis) -> StepReport:
        self._save(rollout, phase=CanaryPhase.ANALYSING)
        metrics: list[Metric] = [m for name in step.templates for m in self.spec.analyses[name]]
        clock = _TickingClock(self.clock, self.poll_interval, lambda: self._tick(rollout, index))
        result = run_analysis(metrics, rollout.context, clock)
        summary = {"step": index, **analysis_summary(result)}
        self._save(rollout, analyses=(*rollout.record.analyses, summary))
        label = f"analysis {', '.join(step.templates)}: {result.message}"
        if result.phase is Phase.FAILED:
            raise _Abort(index, label, result)
        if result.phase is not Phase.SUCCESSFUL:
            # Argo Rollouts pauses an inconclusive analysis for a person
            self._wait_for_person(rollout, index, str(step), label)
        return StepReport(index, str(step), result.message, result)

    def _wait_for_person(self, rollout: _Rollout, index: int, step: str, reason: str) -> StepReport:
        """Hold until a ``promote`` (go on) or an ``abort`` request."""
        self._save(rollout, phase=CanaryPhase.PAUSED, reason=reason)
        log.warning("canary_paused", service=rollout.service, step=index, reason=reason)
        self._watch(rollout, index, None)
        self._save(rollout, phase=CanaryPhase.RUNNING, reason="")
        return StepReport(index, step, "promoted")

    def _release(self, rollout: _Rollout, want: int, index: int) -> None:
        """Send the target spec so that ``want`` tasks run it, and wait for them."""
        spec = copy.deepcopy(rollout.target)
        if want < rollout.replicas:
            own = UpdateConfig.from_api(spec.get("UpdateConfig"))
            # the delay differs at each step: a spec equal to the running
            # update's would leave its updater asleep (Supervisor.Update: "if
            # reflect.DeepEqual(service.Spec, update.newService.Spec) { return }")
            delay = HOLD + timedelta(seconds=want)
            held = own.replace(
                parallelism=want - rollout.released, delay=delay, failure_action="pause"
            )
            spec["UpdateConfig"] = held.to_api()
        current = self.engine.inspect_service(rollout.service)
        self.engine.update_service(current, spec)
        rollout.new_key = self.engine.inspect_service(rollout.service).task_key
        rollout.released = want
        self._save(rollout, released=want)
        deadline = self.clock.monotonic() + self.step_timeout
        while self._new_running(rollout, index) < want:
            if self.clock.monotonic() > deadline:
                raise _Abort(index, f"{want} new tasks not running after {self.step_timeout:g}s")
            self._tick(rollout, index)
            self.clock.sleep(self.poll_interval)

    def _new_running(self, rollout: _Rollout, index: int) -> int:
        """New tasks running; a new task that failed, or the engine pausing
        the update, aborts."""
        view = self.engine.inspect_service(rollout.service)
        if view.state in (UpdateState.PAUSED, UpdateState.ROLLBACK_STARTED):
            message = view.update_status.message if view.update_status else ""
            raise _Abort(index, f"the engine stopped the update ({view.state.value}): {message}")
        running = 0
        for task in self.engine.list_tasks(view.id):
            if task.spec_key != rollout.new_key:
                continue
            if task.state in (TaskState.FAILED, TaskState.REJECTED):
                raise _Abort(index, f"new task {task.id} {task.state.value}: {task.error}")
            if task.state is TaskState.RUNNING and task.desired_state is TaskState.RUNNING:
                running += 1
        if running != rollout.running:
            rollout.running = running
            self._emit(rollout, Progress, "update", running, rollout.replicas, 0)
        return running

    def _watch(self, rollout: _Rollout, index: int, until: float | None) -> bool:
        """Watch the new tasks until ``until`` (None: no end) or a promote;
        True if promoted."""
        while until is None or self.clock.monotonic() < until:
            if rollout.released:
                self._new_running(rollout, index)
            if Request.PROMOTE in self._tick(rollout, index) and self._promoted(rollout, index):
                return True
            left = self.poll_interval if until is None else until - self.clock.monotonic()
            self.clock.sleep(min(self.poll_interval, left))
        return False

    def _wait_done(self, rollout: _Rollout, index: int) -> None:
        deadline = self.clock.monotonic() + self.step_timeout
        while self.engine.inspect_service(rollout.service).state is not UpdateState.COMPLETED:
            self._new_running(rollout, index)
            if self.clock.monotonic() > deadline:
                raise _Abort(index, f"the update did not complete in {self.step_timeout:g}s")
            self._tick(rollout, index)
            self.clock.sleep(self.poll_interval)

    # -- abort ---------------------------------------------------------------------

    def _end_aborted(
        self, rollout: _Rollout, abort: _Abort, reports: Sequence[StepReport]
    ) -> CanaryResult:
        code = _abort_code(abort.analysis)
        total = rollout.replicas
        self._emit(rollout, ThresholdCrossed, code, abort.reason, 0, total, 0.0, "rollback")
        self._emit(rollout, RollbackStarted, "zdd_swarm", abort.reason, "restore")
        try:
            self._save(rollout, phase=CanaryPhase.ABORTING, reason=abort.reason)
            result = self._abort(rollout, abort, reports)
        except LockLost as lost:
            return CanaryResult(
                rollout.service, CanaryOutcome.HANDED_OVER, str(lost), tuple(reports)
            )
        rollout.store.clear()
        return result

    def _abort(
        self, rollout: _Rollout, abort: _Abort, reports: Sequence[StepReport]
    ) -> CanaryResult:
        """Send the saved original spec and wait until every task runs it."""
        log.warning("canary_abort", service=rollout.service, step=abort.index, reason=abort.reason)
        current = self.engine.inspect_service(rollout.service)
        if rollout.released:
            self.engine.update_service(current, rollout.original)
        original_key = self.engine.inspect_service(rollout.service).task_key
        deadline = self.clock.monotonic() + self.step_timeout
        outcome = CanaryOutcome.ROLLED_BACK
        while not self._restored(rollout, original_key):
            if self.clock.monotonic() > deadline:
                outcome = CanaryOutcome.ROLLBACK_FAILED
                break
            if self.clock.monotonic() - rollout.beat_at >= self.heartbeat:
                self._save(rollout)
            self.clock.sleep(self.poll_interval)
        return CanaryResult(rollout.service, outcome, abort.reason, tuple(reports), abort.index)

    def _restored(self, rollout: _Rollout, original_key: str) -> bool:
        """Every replica running the original spec, and the engine's update over."""
        view = self.engine.inspect_service(rollout.service)
        if view.state in (UpdateState.UPDATING, UpdateState.ROLLBACK_STARTED):
            return False
        running = [
            t
            for t in self.engine.list_tasks(view.id)
            if t.state is TaskState.RUNNING and t.desired_state is TaskState.RUNNING
        ]
        return len(running) >= rollout.replicas and all(t.spec_key == original_key for t in running)


def _abort_code(analysis: AnalysisResult | None) -> str:
    """The reason code of an abort: a failed analysis, or anything else."""
    return "analysis_failed" if analysis is not None else "canary_aborted"


def _recordable(spec: CanarySpec) -> Mapping[str, Any] | None:
    """The canary's file form for its record, unless a web metric has
    headers (they may hold credentials; labels are readable by anyone with
    the engine's API): then ``watch`` needs the canary file again."""
    if spec.source is None:
        return None
    for metrics in (spec.source.get("analyses") or {}).values():
        items = metrics.get("metrics", metrics) if isinstance(metrics, Mapping) else metrics
        for metric in items if isinstance(items, list) else [items]:
            web = metric.get("web") if isinstance(metric, Mapping) else None
            if isinstance(web, Mapping) and web.get("headers"):
                return None
    return {
        "steps": [step_text(s) for s in spec.steps],
        "analyses": spec.source.get("analyses") or {},
    }
