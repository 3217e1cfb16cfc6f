"""The decision core: given what the engine shows now, what happens next.

Pure and synchronous: ``Tracker`` is fed observations (service, tasks,
gate samples, a monotonic time) and answers with events and at most one
action. It never talks to the engine and never reads a clock, so every rule
below is unit-tested in simulated time.

Failure counting follows swarmkit's updater
(``manager/orchestrator/update/updater.go``): a new task counts as failed if
it ends past RUNNING and "startedAt.IsZero() || time.Since(startedAt) <=
monitoringPeriod", and the failure action fires when
``failures / tasks_to_update > MaxFailureRatio``. To that we add what Swarm
lacks: a task that is not RUNNING within ``task_deadline`` counts as failed
(Swarm waits forever, moby/swarmkit#486), a rollout that makes no progress
for ``progress_deadline`` or runs past ``timeout`` fails, and gates.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .config import FailureAction, RollbackConfig, TrackerSettings, UpdateConfig
from .events import (
    BatchCompleted,
    BatchStarted,
    Event,
    GateFailed,
    Progress,
    RollbackStarted,
    TaskFailed,
    TaskRunning,
    ThresholdCrossed,
)
from .model import (
    ServiceView,
    TaskState,
    TaskView,
    UpdateState,
    placement_free_key,
    spec_key,
    task_template_key,
)
from .result import BatchReport, GateReport, Outcome, Reason, TaskReport

__all__ = ["Finish", "RequestRollback", "Step", "Tracker", "TrackerSettings"]

#: A replacement task waits up to this long in READY for the task it replaces
#: to stop (swarmkit manager/orchestrator/restart/restart.go:
#: ``const defaultOldTaskTimeout = time.Minute``). A rollback replacing a task
#: that never got a node waits out this timeout, so rollback tasks get it on
#: top of ``task_deadline``.
OLD_TASK_TIMEOUT = timedelta(minutes=1)
#: How long after sending a spec the engine may take to write an update status
#: (its orchestrator starts the updater on the store event, within a second
#: even on a loaded machine); still none after this, it replaced nothing.
NO_STATUS_GRACE = 10.0
#: The engine's pause message, naming the task that made its updater pause.
_PAUSED_BY_TASK = re.compile(r"paused due to failure or early termination of task (\w+)")
#: States of a task that has not reached RUNNING yet and has not ended.
_NOT_STARTED = frozenset(s.value for s in TaskState if s.rank < TaskState.RUNNING.rank)


@dataclass(frozen=True)
class RequestRollback:
    """Ask the engine to go back to the original spec."""

    reason: Reason


@dataclass(frozen=True)
class Finish:
    outcome: Outcome
    reason: Reason


Action = RequestRollback | Finish


@dataclass
class Step:
    events: list[Event] = field(default_factory=list)
    action: Action | None = None


@dataclass
class _Tracked:
    report: TaskReport
    batch: int
    seen: float
    running_at: float | None = None
    #: the engine's timestamp of the RUNNING status we saw
    running_status_at: datetime | None = None
    counted: bool = False
    #: a later task of a slot this phase already replaced: the restart
    #: supervisor's, not the updater's, so never one of its failures
    restart: bool = False


@dataclass
class _Window:
    batch: int
    start: float
    end: float
    reports: dict[str, GateReport]
    closed: bool = False


class _Phase:
    """Book-keeping of one direction: the update, or the rollback."""

    def __init__(
        self,
        name: str,
        target_spec: Mapping[str, Any],
        config: UpdateConfig | RollbackConfig,
        total: int,
        start: float,
    ) -> None:
        self.name = name
        self.spec_key = spec_key(target_spec)
        template = target_spec.get("TaskTemplate") or {}
        self.task_key = task_template_key(template)
        self.placement_free_key = placement_free_key(template)
        self.parallelism = config.parallelism if config.parallelism > 0 else max(total, 1)
        self.monitor = config.monitor.total_seconds()
        delay = config.delay.total_seconds()
        #: what the engine waits without a task changing: a batch's delay, and
        #: after the last batch "one more monitoringPeriod" (``Delay + 1s`` when
        #: "updateConfig.Delay >= monitoringPeriod"; swarmkit ``updater.go``)
        self.engine_waits = delay + (delay + 1 if delay >= self.monitor else self.monitor)
        self.max_failure_ratio = config.max_failure_ratio
        self.total = total
        self.start = start
        self.tasks: dict[str, _Tracked] = {}
        self.slots: list[str] = []
        self.batches: list[BatchReport] = []
        self.failures = 0
        self.failed_slots: set[str] = set()
        self.last_progress = start
        self.windows: list[_Window] = []
        self.last_counts: tuple[int, int] = (-1, -1)
        #: tasks that existed when this phase began (not part of it)
        self.preexisting: set[str] = set()
        #: when the engine was first seen done with a slot still short
        self.ended_at: float | None = None

    @property
    def batch_count(self) -> int:
        return max(1, math.ceil(self.total / self.parallelism))

    def batch_size(self, index: int) -> int:
        return max(0, min(self.parallelism, self.total - index * self.parallelism))


def _slot_of(task: TaskView) -> str:
    return str(task.slot) if task.slot is not None else task.node_id


def rollback_initiator(service: ServiceView) -> str:
    """Who started the rollback the service is in: ``"engine"`` or ``"other"``.

    Swarm's updater rolls back by moving ``PreviousSpec`` into ``Spec`` and
    clearing ``PreviousSpec`` (swarmkit ``updater.go``, ``rollbackUpdate``);
    a rollback requested through the API swaps the two, so ``PreviousSpec``
    then holds the spec that was rolled back (``controlapi/service.go``,
    "manually requested rollback"). The status message cannot tell: both end
    as "rollback completed", and a requested rollback that Swarm pauses says
    "rollback paused due to failure".
    """
    return "engine" if service.previous_spec is None else "other"


def rollback_reason(by: str, message: str) -> Reason:
    """The reason reported for a rollback we did not request."""
    if by == "engine":
        return Reason("engine_rolled_back", f"the engine rolled back: {message}")
    return Reason("rolled_back_by_other", f"a rollback was requested by another client: {message}")


def paused_by(message: str) -> str | None:
    """The ID of the task an engine pause message names, if it names one."""
    found = _PAUSED_BY_TASK.search(message)
    return found.group(1) if found else None


def _within_monitor(tracked: _Tracked, task: TaskView, now: float, monitor: float) -> bool:
    """Whether a task that ended badly failed within ``monitor`` of reaching
    RUNNING (Swarm's rule), or never ran. By the engine's own timestamps when
    both are known, as a failure may be seen a few polls after it happened;
    else by when we saw each (one second of polling slack)."""
    if tracked.running_at is None:
        return True
    if tracked.running_status_at is not None and task.status_at is not None:
        return (task.status_at - tracked.running_status_at).total_seconds() <= monitor + 1.0
    return now - tracked.running_at <= monitor + 1.0


class Tracker:
    """Follows one rollout (update, then perhaps its rollback) to a verdict.

    ``original_spec`` is what the service ran before; ``target_spec`` what it
    should run after (both as the engine stores them). ``stale_update_status``
    is the ``UpdateStatus.StartedAt`` seen before our update: an UpdateStatus
    still carrying it belongs to an earlier update and is ignored.
    """

    def __init__(
        self,
        service: str,
        *,
        original_spec: Mapping[str, Any],
        target_spec: Mapping[str, Any],
        total: int,
        settings: TrackerSettings,
        start: float,
        stale_update_status: object = None,
        phase: str = "update",
        rollback_by: str | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self.start = start
        self.original_spec = original_spec
        self.target_spec = target_spec
        self.total = total
        self.stale_update_status = stale_update_status
        self.rollback_by: str | None = None
        self.rollback_reason: Reason | None = None
        self.rollback_requested = False
        self.crossed: Reason | None = None
        self._seen_ids: set[str] = set()
        update = UpdateConfig.from_api(target_spec.get("UpdateConfig"))
        self.update_config = update
        self.phase = _Phase("update", target_spec, update, total, start)
        self.update_phase = self.phase
        self.rollback_phase: _Phase | None = None
        if phase == "rollback":
            self.begin_rollback(start, rollback_by or "other", Reason("rollback", "rollback"))

    # -- public --------------------------------------------------------------

    @property
    def batches(self) -> list[BatchReport]:
        extra = self.rollback_phase.batches if self.rollback_phase else []
        return self.update_phase.batches + extra

    @property
    def failures(self) -> int:
        return self.update_phase.failures

    @property
    def in_rollback(self) -> bool:
        return self.rollback_phase is not None

    def open_windows(self, now: float) -> bool:
        """Whether gates should be sampled now."""
        return any(not w.closed and w.start <= now for w in self.phase.windows)

    def add_gate_sample(self, now: float, gate: str, ok: bool, detail: str) -> None:
        for window in self.phase.windows:
            if window.closed or now < window.start:
                continue
            report = window.reports[gate]
            report.samples += 1
            report.successes += int(ok)
            if not ok or not report.detail:
                report.detail = detail

    def begin_rollback(self, now: float, by: str, reason: Reason, method: str = "") -> Step:
        """Switch to watching a rollback to ``original_spec``."""
        step = Step()
        if self.rollback_phase is not None:
            return step
        self.rollback_by = by
        self.rollback_reason = reason
        rollback = RollbackConfig.from_api(self.original_spec.get("RollbackConfig"))
        self.rollback_phase = _Phase("rollback", self.original_spec, rollback, self.total, now)
        self.rollback_phase.preexisting = set(self._seen_ids)
        self.phase = self.rollback_phase
        step.events.append(
            RollbackStarted(
                self.service,
                self._elapsed(now),
                by=by,
                reason=reason.message,
                method=method or ("engine-rollback" if by != "zdd_swarm" else ""),
            )
        )
        return step

    def observe(
        self,
        now: float,
        service: ServiceView,
        tasks: Sequence[TaskView],
        nodes: Mapping[str, str],
        down_nodes: AbstractSet[str] = frozenset(),
        drained_nodes: AbstractSet[str] = frozenset(),
    ) -> Step:
        """One observation. ``nodes`` maps node IDs to hostnames;
        ``down_nodes`` and ``drained_nodes`` hold the IDs of the nodes the
        manager reports down, and drained."""
        step = Step()
        # Tasks seen before this observation: if the engine has just started
        # a rollback, the tasks it already created for it are not among them.
        seen_before = set(self._seen_ids)
        self._seen_ids.update(t.id for t in tasks)
        status = service.update_status
        fresh = status is not None and status.started_at != self.stale_update_status
        state = status.state if (status is not None and fresh) else None
        message = status.message if status is not None else ""
        current_key = spec_key(service.spec)

        if self.rollback_phase is None:
            if state is not None and state.rollback and current_key == self.rollback_key:
                by = rollback_initiator(service)
                reason = rollback_reason(by, message)
                step.events += self.begin_rollback(now, by, reason).events
                assert self.rollback_phase is not None
                self.rollback_phase.preexisting = seen_before
            elif current_key != self.phase.spec_key:
                return self._superseded(step, service)
        elif current_key != self.phase.spec_key:
            return self._superseded(step, service)

        phase = self.phase
        self._follow_tasks(step, now, phase, tasks, nodes, down_nodes)
        if (
            state in (UpdateState.COMPLETED, UpdateState.ROLLBACK_COMPLETED)
            and not self.settings.gate_names
        ):
            # The engine completes only after waiting out monitor on the last
            # task it started, by its own clock; without gates to sample,
            # our windows (opened when we saw each task RUNNING, up to a few
            # polls late) have nothing left to watch.
            for window in phase.windows:
                window.end = min(window.end, now)
        self._close_windows(step, now, phase)
        self._progress(step, now, phase, tasks)

        if phase.name == "update":
            if state is UpdateState.PAUSED:
                message += self._drain_note(message, tasks, nodes, drained_nodes)
            step.action = self._decide_update(step, now, state, message, tasks)
        else:
            step.action = self._decide_rollback(step, now, state, message, tasks)
        return step

    # -- helpers ---------------------------------------------------------------

    @property
    def rollback_key(self) -> str:
        return spec_key(self.original_spec)

    def _elapsed(self, now: float) -> float:
        return round(now - self.start, 3)

    def _superseded(self, step: Step, service: ServiceView) -> Step:
        from .spec import diff_specs

        changed = diff_specs(self.phase_target, service.spec)
        step.action = Finish(
            Outcome.SUPERSEDED,
            Reason(
                "superseded",
                f"the service was changed by another client (version {service.version}; "
                f"changed: {', '.join(changed[:8]) or 'spec'}); not overwriting it",
            ),
        )
        return step

    @property
    def phase_target(self) -> Mapping[str, Any]:
        return self.original_spec if self.rollback_phase else self.target_spec

    def _follow_tasks(
        self,
        step: Step,
        now: float,
        phase: _Phase,
        tasks: Sequence[TaskView],
        nodes: Mapping[str, str],
        down_nodes: AbstractSet[str],
    ) -> None:
        for task in sorted(tasks, key=lambda t: (t.created_at is None, t.created_at)):
            if task.spec_key != phase.task_key or task.id in phase.preexisting:
                continue
            node = nodes.get(task.node_id, task.node_id[:12]) or "unassigned"
            tracked = phase.tasks.get(task.id) or self._track(step, now, phase, task, node)
            if tracked is None:
                continue
            report = tracked.report
            report.state, report.desired_state = task.state.value, task.desired_state.value
            report.node = node
            report.error, report.exit_code = task.error, task.exit_code
            if task.running and tracked.running_at is None:
                self._mark_running(step, now, phase, tracked, task)
            if tracked.counted or tracked.restart:
                # swarmkit updater.go counts only "one that we created as part
                # of this update" (u.updatedTasks): one task per dirty slot
                continue
            cause = self._failure_cause(now, phase, tracked, task, down_nodes)
            if cause:
                self._count_failure(step, now, phase, tracked, task, cause)

    def _track(
        self, step: Step, now: float, phase: _Phase, task: TaskView, node: str
    ) -> _Tracked | None:
        """Start following a task of the phase's spec, in its slot's batch."""
        if task.state.terminal and task.desired_state.terminal and not task.failed:
            return None  # an old, orderly shut-down task of the same spec
        slot = _slot_of(task)
        restart = slot in phase.slots
        if not restart:
            phase.slots.append(slot)
        index = phase.slots.index(slot) // phase.parallelism
        self._announce(step, now, phase, index, None if restart else slot)
        report = TaskReport(
            task.id,
            slot,
            node,
            task.state.value,
            task.desired_state.value,
            seen_at=self._elapsed(now),
        )
        tracked = _Tracked(report, index, now, restart=restart)
        phase.tasks[task.id] = tracked
        phase.batches[index].tasks.append(report)
        return tracked

    def _mark_running(
        self, step: Step, now: float, phase: _Phase, tracked: _Tracked, task: TaskView
    ) -> None:
        tracked.running_at = now
        tracked.running_status_at = task.status_at
        tracked.report.running_at = self._elapsed(now)
        phase.last_progress = now
        step.events.append(
            TaskRunning(
                self.service,
                self._elapsed(now),
                tracked.batch,
                task.id,
                tracked.report.node,
                round(now - tracked.seen, 3),
                phase=phase.name,
            )
        )

    def _failure_cause(
        self,
        now: float,
        phase: _Phase,
        tracked: _Tracked,
        task: TaskView,
        down_nodes: AbstractSet[str],
    ) -> str | None:
        """Why a task of this phase counts as failed now, if it does (and its
        report's error says so)."""
        report = tracked.report
        deadline = self.settings.task_deadline
        if deadline is not None and phase.name == "rollback":
            deadline += OLD_TASK_TIMEOUT
        if task.failed or (task.state is TaskState.SHUTDOWN and task.error):
            return "failed" if _within_monitor(tracked, task, now, phase.monitor) else None
        if tracked.running_at is None and not task.state.terminal and task.node_id in down_nodes:
            # it cannot start, and Swarm's updater waits for it regardless
            report.error = f"node {report.node} is down (task {task.state.value})"
            return "node_down"
        if (
            deadline is not None
            and tracked.running_at is None
            and now - tracked.seen > deadline.total_seconds()
        ):
            report.error = report.error or (
                f"not RUNNING after {deadline.total_seconds():g}s (state {task.state.value}"
                f"{': ' + task.message if task.message else ''})"
            )
            return "task_deadline"
        return None

    def _count_failure(
        self, step: Step, now: float, phase: _Phase, tracked: _Tracked, task: TaskView, cause: str
    ) -> None:
        report = tracked.report
        tracked.counted = True
        report.failure = cause
        # swarmkit counts the tasks its updater created, one per slot, not the
        # restarts of a crash-looping slot: count a slot once.
        if report.slot not in phase.failed_slots:
            phase.failed_slots.add(report.slot)
            phase.failures += 1
        step.events.append(
            TaskFailed(
                self.service,
                self._elapsed(now),
                tracked.batch,
                task.id,
                report.node,
                task.state.value,
                report.error,
                task.exit_code,
                cause,
                phase=phase.name,
            )
        )

    def _announce(
        self, step: Step, now: float, phase: _Phase, index: int, slot: str | None
    ) -> None:
        """Open batches up to ``index``; a batch announced in this
        observation names every slot seen for it in the same observation."""
        for i, event in enumerate(step.events):
            if (
                isinstance(event, BatchStarted)
                and event.batch == index
                and event.phase == phase.name
            ):
                if slot is not None and slot not in event.slots:
                    step.events[i] = dataclasses.replace(event, slots=(*event.slots, slot))
                return
        while len(phase.batches) <= index:
            batch_no = len(phase.batches)
            phase.batches.append(BatchReport(batch_no, phase.name, started_at=self._elapsed(now)))
            slots = (slot,) if slot is not None and batch_no == index else ()
            step.events.append(
                BatchStarted(self.service, self._elapsed(now), batch_no, slots, phase=phase.name)
            )

    def _close_windows(self, step: Step, now: float, phase: _Phase) -> None:
        for index, batch in enumerate(phase.batches):
            expected = phase.batch_size(index)
            running = [
                t
                for t in phase.tasks.values()
                if t.batch == index and t.running_at is not None and not t.counted
            ]
            if batch.running_at is None and expected and len(running) >= expected:
                batch.running_at = self._elapsed(now)
                reports = {g: GateReport(g, None) for g in self.settings.gate_names}
                batch.gates = list(reports.values())
                phase.windows.append(_Window(index, now, now + phase.monitor, reports))
        for window in phase.windows:
            if window.closed:
                continue
            batch = phase.batches[window.batch]
            for report in window.reports.values():
                need = self.settings.gate_min_ratio.get(report.gate, 1.0)
                failed_now = need >= 1.0 and report.samples > report.successes
                if now >= window.end or failed_now:
                    ratio = report.successes / report.samples if report.samples else 0.0
                    report.passed = report.samples > 0 and ratio >= need
                    if not report.passed:
                        report.detail = (
                            f"{report.successes}/{report.samples} samples passed "
                            f"(need {need:.0%}); last: {report.detail or 'no sample'}"
                        )
                        step.events.append(
                            GateFailed(
                                self.service,
                                self._elapsed(now),
                                window.batch,
                                report.gate,
                                report.detail,
                            )
                        )
            done = all(r.passed is not None for r in window.reports.values())
            if now >= window.end or (done and any(not r.passed for r in window.reports.values())):
                window.closed = True
                for report in window.reports.values():
                    if report.passed is None:
                        report.passed = report.samples > 0 and (
                            report.successes / report.samples
                            >= self.settings.gate_min_ratio.get(report.gate, 1.0)
                        )
                if not batch.failed:
                    batch.completed_at = self._elapsed(now)
                    step.events.append(
                        BatchCompleted(
                            self.service,
                            self._elapsed(now),
                            window.batch,
                            round(batch.completed_at - batch.started_at, 3),
                        )
                    )

    def _progress(self, step: Step, now: float, phase: _Phase, tasks: Sequence[TaskView]) -> None:
        running = self._running_of(phase, tasks)
        counts = (running, phase.failures)
        if counts != phase.last_counts:
            phase.last_counts = counts
            step.events.append(
                Progress(
                    self.service,
                    self._elapsed(now),
                    phase.name,
                    running,
                    phase.total,
                    phase.failures,
                )
            )

    @staticmethod
    def _running_of(phase: _Phase, tasks: Sequence[TaskView]) -> int:
        return sum(
            1
            for t in tasks
            if t.spec_key == phase.task_key and t.running and t.desired_state is TaskState.RUNNING
        )

    @staticmethod
    def _up_to_date(phase: _Phase, tasks: Sequence[TaskView]) -> int:
        """Running tasks the engine's updater leaves alone: of the phase's
        spec, or differing from it in placement only (swarmkit
        ``orchestrator/task.go``, IsTaskDirty: "Task is not dirty if the
        placement constraints alone changed and the node currently assigned
        can satisfy the changed constraints"; only judged once the engine
        completed or wrote no status, so the node did satisfy them)."""
        return sum(
            1
            for t in tasks
            if t.running
            and t.desired_state is TaskState.RUNNING
            and (
                t.spec_key == phase.task_key
                or (t.placement_free_key or None) == phase.placement_free_key
            )
        )

    @staticmethod
    def _engine_silent(now: float, phase: _Phase, state: UpdateState | None) -> bool:
        """The engine wrote no update status ``NO_STATUS_GRACE`` after the
        phase began: its updater found no dirty slot (swarmkit ``updater.go``:
        "Abort immediately if all tasks are clean", before "If there's no
        update in progress, we are starting one"; ``controlapi/service.go``
        resets "service.UpdateStatus = nil" for every spec sent). What is left
        to judge is ours: the tasks of the new spec (a scale-up's new slots
        are created by the orchestrator, not the updater)."""
        return state is None and now - phase.start >= NO_STATUS_GRACE

    @staticmethod
    def _waiting_on_down_node(phase: _Phase) -> TaskReport | None:
        """A new task on a down node that never ran and has not ended: the
        engine's updater waits for it (swarmkit ``updater.go``, ``updateTask``:
        "TODO(aluzzardi): Consider adding a timeout here")."""
        for tracked in phase.tasks.values():
            report = tracked.report
            if (
                report.failure == "node_down"
                and tracked.running_at is None
                and report.state in _NOT_STARTED
            ):
                return report
        return None

    @staticmethod
    def _drain_note(
        message: str,
        tasks: Sequence[TaskView],
        nodes: Mapping[str, str],
        drained_nodes: AbstractSet[str],
    ) -> str:
        """Swarm counts a new task that ended within monitor as a failure,
        whatever ended it: a drain of its node too."""
        pauser = paused_by(message)
        task = next((t for t in tasks if t.id == pauser), None)
        if task is None or task.node_id not in drained_nodes or task.failed:
            return ""
        node = nodes.get(task.node_id, task.node_id[:12])
        return (
            f" (task {task.id[:12]} was shut down by the drain of node {node}: Swarm "
            f"counts a new task that ends within monitor as a failure, whatever ended it)"
        )

    def _stale_pause(self, message: str) -> bool:
        """A pause written over our rollback by the update it replaced.

        The engine cancels the update's updater only once our rollback is in
        its store; if that updater takes a failure of one of *its* tasks off
        its queue while stopping, its ``pauseUpdate`` turns ROLLBACK_STARTED
        into ROLLBACK_PAUSED ("update paused due to failure or early
        termination of task <update's task>"), while the rollback's own
        updater, already started, goes on and ends the status as "update
        completed" (swarmkit ``updater.go``: ``pauseUpdate``, ``completeUpdate``).
        """
        task_id = paused_by(message)
        if task_id is None or self.rollback_phase is None:
            return False
        return task_id in self.update_phase.tasks or task_id in self.rollback_phase.preexisting

    def _gates_failed(self, phase: _Phase) -> GateReport | None:
        for window in phase.windows:
            for report in window.reports.values():
                if report.passed is False:
                    return report
        return None

    def _decide_update(
        self,
        step: Step,
        now: float,
        state: UpdateState | None,
        message: str,
        tasks: Sequence[TaskView],
    ) -> Action | None:
        phase = self.phase
        s = self.settings
        crossed = self._crossed(now, phase, state, message)
        if crossed is not None:
            if self.crossed is None or self.crossed.code != crossed.code:
                self.crossed = crossed
                step.events.append(
                    ThresholdCrossed(
                        self.service,
                        self._elapsed(now),
                        crossed.code,
                        crossed.message,
                        phase.failures,
                        phase.total,
                        self.update_config.max_failure_ratio,
                        s.failure_action.value,
                    )
                )
            if s.failure_action is FailureAction.ROLLBACK:
                return None if self.rollback_requested else RequestRollback(crossed)
            if state is UpdateState.PAUSED and crossed.code != "engine_paused":
                crossed = Reason(
                    "engine_paused", f"the engine paused the update: {message} ({crossed.message})"
                )
            if s.failure_action is FailureAction.PAUSE or crossed.code == "engine_paused":
                return Finish(Outcome.PAUSED, crossed)
            if crossed.code == "timeout":
                return Finish(Outcome.FAILED, crossed)
            # continue: report only, keep watching
        return self._decide_end(now, phase, state, tasks)

    def _crossed(
        self, now: float, phase: _Phase, state: UpdateState | None, message: str
    ) -> Reason | None:
        """The first threshold the update has crossed, if any, in the order
        they are judged."""
        s = self.settings
        crossed: Reason | None = None
        ratio = phase.failures / max(phase.total, 1)
        gate = self._gates_failed(phase)
        if s.timeout is not None and now - self.start > s.timeout.total_seconds():
            crossed = Reason(
                "timeout", f"the rollout ran past its timeout of {s.timeout.total_seconds():g}s"
            )
        elif phase.failures and ratio > self.update_config.max_failure_ratio:
            failed = [t.report for t in phase.tasks.values() if t.report.failure]
            last = failed[-1]
            code = last.failure if last.failure in ("task_deadline", "node_down") else "task_failed"
            limit = self.update_config.max_failure_ratio
            crossed = Reason(
                code,
                f"{phase.failures} of {phase.total} new tasks failed "
                f"(max_failure_ratio {limit:g}); task {last.id[:12]} "
                f"on {last.node}: {last.error or last.state}",
            )
        elif (stuck := self._waiting_on_down_node(phase)) is not None:
            crossed = Reason(
                "node_down",
                (
                    f"the engine's update waits for task {stuck.id[:12]} on {stuck.node}, which "
                    f"is down: Swarm's updater has no timeout for a task that never starts and "
                    f"goes on only if the node comes back (the failure itself is within "
                    f"max_failure_ratio {self.update_config.max_failure_ratio:g})"
                ),
            )
        elif state is UpdateState.PAUSED:
            crossed = Reason("engine_paused", f"the engine paused the update: {message}")
        elif gate is not None:
            crossed = Reason("gate_failed", f"gate {gate.gate} failed: {gate.detail}")
        elif (
            s.progress_deadline is not None
            and state is not UpdateState.COMPLETED
            and now - phase.last_progress > s.progress_deadline.total_seconds() + phase.engine_waits
        ):
            crossed = Reason(
                "progress_deadline",
                f"no new task reached RUNNING for {s.progress_deadline.total_seconds():g}s "
                f"beyond the engine's own delay and monitor waits ({phase.engine_waits:g}s)",
            )
        return crossed

    def _decide_end(
        self, now: float, phase: _Phase, state: UpdateState | None, tasks: Sequence[TaskView]
    ) -> Action | None:
        """Whether the update is over: the engine completed it (or wrote no
        status: nothing was dirty) and every window closed."""
        silent = self._engine_silent(now, phase, state)
        if not (state is UpdateState.COMPLETED or silent) or not all(
            w.closed for w in phase.windows
        ):
            return None
        if self.crossed is not None:  # failure_action continue: the engine is done
            return Finish(
                Outcome.FAILED,
                Reason(
                    self.crossed.code,
                    f"completed with failures (failure_action continue): {self.crossed.message}",
                ),
            )
        running = self._up_to_date(phase, tasks)
        if running >= phase.total:
            if silent and not phase.tasks:
                return Finish(
                    Outcome.COMPLETED,
                    Reason(
                        "nothing_to_replace",
                        f"the engine replaced no task: all {phase.total} tasks already match the "
                        "new spec (Swarm then writes no update status)",
                    ),
                )
            return Finish(
                Outcome.COMPLETED,
                Reason("update_completed", f"all {phase.total} tasks run the new spec"),
            )
        # The engine is done but a slot is not running (a restart on its way,
        # or a slot that keeps failing within max_failure_ratio): wait for it
        # as long as a new task may take to start, then say so.
        phase.ended_at = phase.ended_at if phase.ended_at is not None else now
        grace = self.settings.task_deadline or OLD_TASK_TIMEOUT
        if now - phase.ended_at > grace.total_seconds():
            return Finish(
                Outcome.FAILED,
                Reason(
                    "incomplete",
                    f"the engine completed the update, but only {running} of {phase.total} "
                    f"tasks run the new spec {grace.total_seconds():g}s later",
                ),
            )
        return None

    def _decide_rollback(
        self,
        step: Step,
        now: float,
        state: UpdateState | None,
        message: str,
        tasks: Sequence[TaskView],
    ) -> Action | None:
        phase = self.phase
        why = self.rollback_reason.message if self.rollback_reason else ""
        paused = state in (UpdateState.ROLLBACK_PAUSED, UpdateState.PAUSED)
        if paused and not self._stale_pause(message):
            return Finish(
                Outcome.ROLLBACK_FAILED,
                Reason(
                    "rollback_paused",
                    f"the rollback stopped: {message} (rolled back because: {why})",
                ),
            )
        limit = self.settings.rollback_timeout.total_seconds()
        if now - phase.start > limit:
            stalled = f"; the engine says: {message}" if paused else ""
            return Finish(
                Outcome.ROLLBACK_FAILED,
                Reason(
                    "rollback_deadline",
                    f"the rollback did not finish within {limit:g}s{stalled} "
                    f"(rolled back because: {why})",
                ),
            )
        rollback = RollbackConfig.from_api(self.original_spec.get("RollbackConfig"))
        # swarmkit updater.go watches for failed tasks only "if
        # updateConfig.FailureAction != api.UpdateConfig_CONTINUE": a rollback
        # with failure_action continue goes on past failed tasks, and so do we
        # (it ends on completion or on rollback_timeout).
        acts = rollback.failure_action is not FailureAction.CONTINUE
        if acts and phase.failures / max(phase.total, 1) > rollback.max_failure_ratio:
            failed = [t.report for t in phase.tasks.values() if t.report.failure][-1]
            return Finish(
                Outcome.ROLLBACK_FAILED,
                Reason(
                    "rollback_task_failed",
                    f"a rollback task failed: {failed.id[:12]} on "
                    f"{failed.node}: {failed.error or failed.state} "
                    f"(rolled back because: {why})",
                ),
            )
        if (
            state in (UpdateState.ROLLBACK_COMPLETED, UpdateState.COMPLETED)
            or self._engine_silent(now, phase, state)
        ) and self._up_to_date(phase, tasks) >= phase.total:
            reason = self.rollback_reason or Reason("rolled_back", "rolled back")
            return Finish(Outcome.ROLLED_BACK, reason)
        return None
