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

A failed analysis, a new task that fails, the engine pausing the update or
a step not reached in time abort the canary: every task back on the
original spec. An analysis inconclusive or in error aborts too, for now:
there is no promote yet to let a person decide.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .._logging import get_logger
from ..clock import Clock, SystemClock
from ..config import UpdateConfig
from ..engine import Engine
from ..errors import ConfigError, StepError, UnsupportedServiceMode, UpdateInProgress
from ..model import TaskState, UpdateState, image_of, replicas_of, task_template_key
from ..spec import ServiceChange
from .analysis import AnalysisResult, Metric, QueryContext, check_metrics, run_analysis
from .spec import CanarySpec
from .steps import Analysis, Pause, SetWeight, Step, validate_steps

__all__ = ["HOLD", "Canary", "CanaryOutcome", "CanaryResult", "StepReport"]

log = get_logger()

HOLD = timedelta(days=1)
"""The delay that holds Swarm's updater between two steps."""


class CanaryOutcome(enum.StrEnum):
    COMPLETED = "completed"
    """Every step passed; every task runs the new release."""
    ABORTED = "aborted"
    """Stopped at a step; every task is back on the original spec."""
    ABORT_FAILED = "abort_failed"
    """Stopped at a step, and the original spec did not come back in time."""


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
    """One canary under way: what it started from and how far it went."""

    service: str
    original: Mapping[str, Any]
    target: dict[str, Any]
    replicas: int
    context: QueryContext
    released: int = 0
    new_key: str = ""


class Canary:
    """Runs ``spec`` (steps and analyses) on a service: ``run(service, change)``."""

    def __init__(
        self,
        engine: Engine,
        spec: CanarySpec,
        *,
        clock: Clock | None = None,
        poll_interval: float = 1.0,
        step_timeout: float = 300.0,
    ) -> None:
        self.engine, self.spec = engine, spec
        self.clock = clock or SystemClock()
        self.poll_interval, self.step_timeout = poll_interval, step_timeout

    def run(self, service: str, change: ServiceChange | str) -> CanaryResult:
        """Release ``change`` (or a new image) to ``service`` step by step; bad
        input (steps, analyses, a query Prometheus refuses) raises
        ``InputError`` before anything is sent."""
        if isinstance(change, str):
            change = ServiceChange(image=change)
        rollout = self._prepare(service, change)
        reports: list[StepReport] = []
        try:
            for index, step in enumerate(self.spec.steps):
                reports.append(self._step(rollout, index, step))
            self._wait_done(rollout, len(reports) - 1)
        except _Abort as abort:
            reports.append(StepReport(abort.index, "abort", abort.reason, abort.analysis))
            return self._abort(rollout, abort, reports)
        except KeyboardInterrupt:
            # a held update left alone goes on one slot per worker and per
            # delay, unanalysed: with no one to drive it, restore the original
            interrupted = _Abort(len(reports), "interrupted: no one would drive the canary on")
            reports.append(StepReport(interrupted.index, "abort", interrupted.reason))
            return self._abort(rollout, interrupted, reports)
        return CanaryResult(service, CanaryOutcome.COMPLETED, "every step passed", tuple(reports))

    # -- before anything is sent ----------------------------------------------

    def _prepare(self, service: str, change: ServiceChange) -> _Rollout:
        current = self.engine.inspect_service(service)
        replicas = replicas_of(current.spec)
        if replicas is None:
            raise UnsupportedServiceMode(f"service {current.name!r}: a canary needs replicas")
        if current.state in (UpdateState.UPDATING, UpdateState.ROLLBACK_STARTED):
            raise UpdateInProgress(f"service {current.name!r}: an update is in progress")
        steps = validate_steps(self.spec.steps, self.spec.analyses, replicas)
        for index, step in enumerate(steps):
            if isinstance(step, Pause) and step.until_promoted:
                raise StepError(index, "pause", "pause", "a duration: promote is not available yet")
        if change.pin_digest:
            raise ConfigError("pin_digest", True, "not with a canary yet")
        target = change.apply(current.spec)
        if task_template_key(target.get("TaskTemplate") or {}) == current.task_key:
            raise ConfigError(
                "change", current.name, "a change of the tasks: a canary replaces tasks"
            )
        context = QueryContext(current.name, current.image, image_of(target))
        check_metrics([m for ms in self.spec.analyses.values() for m in ms], context)
        return _Rollout(current.name, copy.deepcopy(dict(current.spec)), target, replicas, context)

    # -- steps ---------------------------------------------------------------------

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
            assert step.duration is not None
            self._watch(rollout, index, self.clock.monotonic() + step.duration.total_seconds())
            return StepReport(index, str(step), "waited")
        return self._analysis(rollout, index, step)

    def _analysis(self, rollout: _Rollout, index: int, step: Analysis) -> StepReport:
        metrics: list[Metric] = [m for name in step.templates for m in self.spec.analyses[name]]
        result = run_analysis(metrics, rollout.context, self.clock)
        if not result:
            raise _Abort(index, f"analysis {', '.join(step.templates)}: {result.message}", result)
        return StepReport(index, str(step), result.message, result)

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
        deadline = self.clock.monotonic() + self.step_timeout
        while self._new_running(rollout, index) < want:
            if self.clock.monotonic() > deadline:
                raise _Abort(index, f"{want} new tasks not running after {self.step_timeout:g}s")
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
        return running

    def _watch(self, rollout: _Rollout, index: int, until: float) -> None:
        while self.clock.monotonic() < until:
            self._new_running(rollout, index)
            self.clock.sleep(min(self.poll_interval, until - self.clock.monotonic()))

    def _wait_done(self, rollout: _Rollout, index: int) -> None:
        deadline = self.clock.monotonic() + self.step_timeout
        while self.engine.inspect_service(rollout.service).state is not UpdateState.COMPLETED:
            self._new_running(rollout, index)
            if self.clock.monotonic() > deadline:
                raise _Abort(index, f"the update did not complete in {self.step_timeout:g}s")
            self.clock.sleep(self.poll_interval)

    # -- abort ---------------------------------------------------------------------

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
        outcome = CanaryOutcome.ABORTED
        while not self._restored(rollout, original_key):
            if self.clock.monotonic() > deadline:
                outcome = CanaryOutcome.ABORT_FAILED
                break
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
