"""The rollout controller: a thin loop around ``Tracker``.

It validates input before touching the cluster, sends the update through the
engine adapter, then observes (service, tasks, gates) every
``poll_interval``, feeds the tracker and carries out its decisions: request
a rollback (guarded by the service version, so a rollback is never sent
twice), or finish with a typed ``RolloutResult``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ._logging import get_logger
from .clock import Clock, SystemClock
from .config import (
    AUTO,
    CANARY_HOLD,
    RollbackConfig,
    RolloutOptions,
    UpdateConfig,
    expected_seconds,
    lint,
)
from .engine import DockerEngine, Engine, NodeView, ServiceEvents
from .errors import (
    ConcurrentChange,
    ConfigError,
    EngineUnavailable,
    InputError,
    NotAManager,
    ServiceNotFound,
    UnsupportedServiceMode,
    UpdateInProgress,
    UpdatePaused,
    VersionConflict,
    ZddError,
)
from .events import EngineUnreachable, Event, Hook, RolloutFinished, RolloutStarted
from .model import (
    ResolvedImage,
    ServiceView,
    TaskState,
    TaskView,
    UpdateState,
    image_of,
    replicas_of,
    spec_key,
    task_template_key,
)
from .result import Outcome, Reason, RolloutResult
from .spec import ServiceChange, diff_service_specs, diff_specs
from .tracker import (
    Finish,
    RequestRollback,
    Tracker,
    paused_by,
    rollback_initiator,
    rollback_reason,
)

__all__ = [
    "AUTO",
    "ConcurrentChange",
    "Controller",
    "Plan",
    "RolloutOptions",
    "UpdateInProgress",
]

log = get_logger()

_WARN_EVENTS = {
    "task_failed",
    "gate_failed",
    "threshold_crossed",
    "rollback_started",
    "engine_unreachable",
}


@dataclass(frozen=True)
class Plan:
    """What an update would do (``--dry-run``): nothing is changed."""

    service: str
    image_before: str
    image_after: str
    changed: list[str]
    total: int
    batches: int
    update_config: UpdateConfig
    estimated_seconds: float
    """How long the engine's updater should take: every batch started, its
    delay waited, then the last monitor (see ``expected_seconds``)."""
    rollback_seconds: float = 0.0
    """The same for a rollback to the current spec, by its rollback config."""
    warnings: list[str] = field(default_factory=list)

    @property
    def noop(self) -> bool:
        return not self.changed


#: How often the node list is refreshed while watching (seconds).
_NODE_REFRESH = 10.0


#: The engine's states in which a drained node may be the cause.
_PAUSES = (UpdateState.PAUSED, UpdateState.ROLLBACK_PAUSED)
_ENDS = (*_PAUSES, UpdateState.COMPLETED, UpdateState.ROLLBACK_COMPLETED)
#: ``updatestate.new`` of an event that says an update or rollback goes on.
_GOING_ON = (UpdateState.UPDATING.value, UpdateState.ROLLBACK_STARTED.value)


class _TaskCadence:
    """What to ask the engine on each poll. While the tasks change, they are
    listed on every poll and the service is inspected on every other one: the
    tasks are what moves a rollout along then. While they are quiet (a
    monitor window, an update delay, a task still starting), the service is
    inspected on every poll (its ``UpdateStatus`` tells when the engine
    completes or pauses) and the tasks listed every ``QUIET_POLLS`` polls, or
    at once when the service changed. A watch thus costs at most 1.5 Engine
    API requests per second, plus the node list every ``_NODE_REFRESH``.

    With the engine's event stream alive, a state the engine decides (its
    pause on a failed task, its completion, its own rollback) wakes the loop
    and lists the tasks at once, so changing tasks are listed every
    ``EVENT_BUSY_POLLS`` polls: about 0.7 requests per second. A rollback
    is the engine's to carry out and to end (``rollback_completed`` or
    ``rollback_paused``, both service events), so with the stream alive its
    tasks are listed when it ends and otherwise every ``EVENT_POLLS`` polls,
    as the service is inspected."""

    QUIET_POLLS = 3
    EVENT_BUSY_POLLS = 2
    #: With the engine's event stream, which wakes the loop when the service
    #: changes, the service is inspected on an event and otherwise only every
    #: this many polls (in case an event is lost).
    EVENT_POLLS = 5

    def __init__(
        self, poll: float, events: ServiceEvents | None = None, *, fresh: bool = False
    ) -> None:
        self.poll = poll
        self.interval = poll
        self.last_listed = -math.inf
        self.tasks_seen: object = None
        self.service_seen: object = None
        #: the first poll inspects the service, unless the watch starts from
        #: a view just inspected (``fresh``: the one our update returned) and
        #: the event stream tells what changes after it
        self.service_skipped = not (fresh and events is not None)
        self.events = events
        self.since_inspected = 0

    @property
    def streamed(self) -> bool:
        """Whether the engine's event stream is alive."""
        return self.events is not None and self.events.alive

    def service_due(self) -> bool:
        if self.streamed:
            due = self.service_skipped or self.since_inspected + 1 >= self.EVENT_POLLS
        else:
            due = self.interval > self.poll or self.service_skipped
        self.service_skipped = not due and self.events is None
        self.since_inspected = 0 if due else self.since_inspected + 1
        return due

    def service_changed(self) -> None:
        """We changed the service, or the engine said it changed: inspect it
        on the next poll."""
        self.service_skipped = True

    def rollback_sent(self) -> None:
        """We asked for a rollback: the service we hold predates it (inspect
        it on the next poll), and its tasks go at the rollback's pace."""
        self.service_changed()
        if self.streamed:
            self.interval = self.poll * self.EVENT_POLLS

    def tasks_due(self, now: float, service: ServiceView, *, rolling_back: bool = False) -> bool:
        seen = (service.version, service.update_status)
        changed, self.service_seen = seen != self.service_seen, seen
        if changed and rolling_back and self.streamed:
            # the engine carries the rollback out; only its end is news
            status = service.update_status
            changed = status is None or status.state in _ENDS
        # a little slack: a poll that wakes early still lists
        return changed or now - self.last_listed >= self.interval - self.poll / 10

    def listed(self, now: float, tasks: Sequence[TaskView], *, rolling_back: bool) -> None:
        seen = [(t.id, t.state, t.desired_state, t.node_id) for t in tasks]
        quiet = seen == self.tasks_seen
        self.tasks_seen, self.last_listed = seen, now
        if self.streamed and rolling_back:
            polls = self.EVENT_POLLS
        elif quiet:
            polls = self.QUIET_POLLS
        else:
            polls = self.EVENT_BUSY_POLLS if self.streamed else 1
        self.interval = self.poll * polls


class _Nodes:
    """The swarm's nodes as a watch needs them: names for the report, which
    are down (a new task on a down node never starts and the engine waits for
    it) and which are drained. Read every ``_NODE_REFRESH`` seconds, when a
    task is on a node not seen yet, and when the engine pauses on a task
    that did not fail by itself (so that a pause can be told to be a drain's
    doing: a drained task is shut down, not failed)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.down: set[str] = set()
        self.drained: set[str] = set()
        self.listed_at = -math.inf
        self.state_seen: object = None

    def due(self, now: float, service: ServiceView, tasks: Sequence[TaskView]) -> bool:
        status = service.update_status
        state = status.state if status is not None else None
        paused = state != self.state_seen and state in _PAUSES
        self.state_seen = state
        if paused and status is not None:
            pauser = paused_by(status.message)
            paused = not any(t.id == pauser and t.failed for t in tasks)
        return (
            now - self.listed_at >= _NODE_REFRESH
            or paused
            or any(t.node_id and t.node_id not in self.names for t in tasks)
        )

    def listed(self, now: float, nodes: Sequence[NodeView]) -> None:
        self.names = {n.id: n.hostname for n in nodes}
        self.down = {n.id for n in nodes if n.state == "down"}
        self.drained = {n.id for n in nodes if n.availability == "drain"}
        self.listed_at = now


@dataclass
class _Seen:
    """What a watch last saw of the engine, and when to look again."""

    service: ServiceView
    cadence: _TaskCadence
    tasks: list[TaskView] = field(default_factory=list)
    nodes: _Nodes = field(default_factory=_Nodes)
    outage_since: float | None = None


class _GateClock:
    """Gates are sampled at most once per poll interval."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last = -math.inf

    def due(self, now: float) -> bool:
        if now - self.last < self.interval:
            return False
        self.last = now
        return True


_REMOVED = Finish(
    Outcome.SUPERSEDED,
    Reason("service_removed", "the service was removed while we watched it"),
)


def _held_by_a_canary(spec: Mapping[str, Any]) -> bool:
    """Whether ``spec``'s update delay is a canary's hold (``CANARY_HOLD``)."""
    return UpdateConfig.from_api(spec.get("UpdateConfig")).delay >= CANARY_HOLD


def _refuse_a_held_canary(current: ServiceView) -> None:
    """A canary in flight holds Swarm's updater with a long update delay
    (``CANARY_HOLD``) between its steps: watching that update would wait for
    the hold, and the engine's rollback would go to the previous step, not to
    the spec from before the canary. The canary's own commands do both."""
    if _held_by_a_canary(current.spec) and current.state is UpdateState.UPDATING:
        name = current.name
        raise UpdateInProgress(
            f"service {name!r}: a canary holds its update between two steps; follow it with "
            f"`zdd-swarm canary status {name}` or `zdd-swarm watch {name}`, end it with "
            f"`zdd-swarm canary promote|abort {name}`"
        )


def _refuse_a_canary_hold(current: ServiceView) -> None:
    """After a canary completed, the engine's previous spec is its last
    step's: the new release, with the update delay that held Swarm's
    updater (``CANARY_HOLD``). Rolling back to it replaces no task and puts
    that delay back; refused, with the way back."""
    previous = current.previous_spec or {}
    same = task_template_key(previous.get("TaskTemplate") or {}) == current.task_key
    if _held_by_a_canary(previous) and same:
        raise InputError(
            f"service {current.name!r}: its previous spec is a canary step's, the same "
            f"release ({current.image}) held by a long update delay; rolling back to it would "
            f"replace no task. Update to the release before the canary instead "
            f"(zdd-swarm update {current.name} --image IMAGE)"
        )


def _paused_refusal(current: ServiceView) -> str:
    """Why the same spec is not sent again to a service whose update the
    engine paused, and what to do instead.

    swarmkit ``manager/controlapi/service.go`` (UpdateService) sets
    "service.PreviousSpec = service.Spec.Copy()" and "service.UpdateStatus =
    nil" for every spec sent: the same spec again would start a fresh update
    whose previous spec is the half-deployed release itself, so nothing would
    be left to roll back to.
    """
    status = current.update_status
    said = status.message if status else ""
    if current.state is UpdateState.ROLLBACK_PAUSED:
        return (
            f"service {current.name!r}: the engine paused the rollback of its last update "
            f"half way ({said}); some tasks may still run the release rolled back from. "
            f"Run `zdd-swarm update {current.name} --force` to replace every task with "
            f"the current spec ({current.image}), or update to another image"
        )
    return (
        f"service {current.name!r}: the engine paused its last update half way ({said}); "
        f"sending the same spec again would not say whether {current.image} is good. "
        f"Run `zdd-swarm rollback {current.name}` to go back to "
        f"{current.previous_image or 'the previous spec'}, or update to another image"
    )


class Controller:
    """Drives and watches rollouts on one engine.

    >>> controller = Controller(DockerEngine("unix:///var/run/docker.sock"))  # doctest: +SKIP
    >>> result = controller.update("web", ServiceChange(image="registry/web:2"))  # doctest: +SKIP
    >>> result.outcome  # doctest: +SKIP
    <Outcome.COMPLETED: 'completed'>
    """

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        clock: Clock | None = None,
        hooks: Sequence[Hook] = (),
        options: RolloutOptions | None = None,
    ) -> None:
        self.engine: Engine = engine if engine is not None else DockerEngine()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.hooks = list(hooks)
        self.options = options or RolloutOptions()

    # -- public operations ----------------------------------------------------

    def plan(self, service: str, change: ServiceChange) -> Plan:
        """Validate and describe an update without changing anything."""
        current = self._prepare(service)
        new_spec = change.apply(current.spec, resolved=self._image(change))
        return self._plan(current, new_spec, self.options)

    def update(
        self, service: str, change: ServiceChange, options: RolloutOptions | None = None
    ) -> RolloutResult:
        """Update ``service`` with ``change`` and follow it to an outcome."""
        opts = options or self.options
        current = self._prepare(service)
        new_spec = change.apply(current.spec, resolved=self._image(change))
        plan = self._plan(current, new_spec, opts)
        _refuse_a_held_canary(current)
        if current.state in (UpdateState.UPDATING, UpdateState.ROLLBACK_STARTED):
            if spec_key(new_spec) == spec_key(current.spec) and current.previous_spec:
                log.info("attach", service=current.name, reason="same update already in progress")
                return self._watch_current(current, opts)
            raise UpdateInProgress(
                f"service {current.name!r}: an update is already in progress "
                f"({current.state.value}); use watch, or wait for it to end"
            )
        if current.state in (UpdateState.PAUSED, UpdateState.ROLLBACK_PAUSED) and plan.noop:
            raise UpdatePaused(_paused_refusal(current))
        start = self.clock.monotonic()
        if plan.noop:
            return self._noop(
                current,
                start,
                "no_change",
                "the service already has the requested spec; nothing to do",
            )
        for warning in plan.warnings:
            log.warning("lint", service=current.name, warning=warning)
        stale = current.update_status.started_at if current.update_status else None
        # tasks of an earlier attempt at the same spec (Swarm keeps a few per
        # slot) are not failures of this one
        earlier = {t.id for t in self.engine.list_tasks(current.id)}
        sent = self._send_update(current, new_spec, change)
        target = self.engine.inspect_service(current.id)
        # swarmkit orchestrator/task.go, IsTaskDirty: a task is dirty when
        # "!reflect.DeepEqual(serviceTaskSpec, t.Spec) || (t.Endpoint != nil &&
        # !reflect.DeepEqual(s.Spec.Endpoint, t.Endpoint.Spec))": with neither
        # changed, the engine replaces nothing.
        if target.task_key == current.task_key and target.endpoint_key == current.endpoint_key:
            result = self._noop(
                current,
                start,
                "spec_updated",
                "the service spec was updated; its tasks are unchanged",
                after=target,
            )
            result.warnings = plan.warnings + sent
            return result
        tracker = Tracker(
            current.name,
            original_spec=current.spec,
            target_spec=target.spec,
            total=plan.total,
            settings=opts.tracker_settings(plan.estimated_seconds, plan.rollback_seconds),
            start=start,
            stale_update_status=stale,
        )
        tracker.phase.preexisting = earlier
        return self._follow(tracker, current, target, opts, "update", plan.warnings + sent)

    def watch(self, service: str, options: RolloutOptions | None = None) -> RolloutResult:
        """Attach to an update already in progress and follow it to its outcome."""
        return self._watch_current(self._prepare(service), options or self.options)

    def rollback(self, service: str, options: RolloutOptions | None = None) -> RolloutResult:
        """Ask the engine to roll ``service`` back to its previous spec, and watch it."""
        opts = options or self.options
        current = self._prepare(service)
        if current.previous_spec is None:
            raise InputError(f"service {current.name!r} has no previous spec to roll back to")
        if current.state is not None and current.state.rollback:
            raise InputError(
                f"service {current.name!r}: its last update was already rolled back "
                f"({current.state.value}); rolling back again would redeploy "
                f"{current.previous_image}. Use update to choose an image"
            )
        _refuse_a_held_canary(current)
        _refuse_a_canary_hold(current)
        existing = {t.id for t in self.engine.list_tasks(current.id)}
        start = self.clock.monotonic()
        self.engine.update_service(current, current.spec, rollback=True)
        tracker = Tracker(
            current.name,
            original_spec=current.previous_spec,
            target_spec=current.spec,
            total=self._total(current),
            settings=opts.tracker_settings(
                0.0,
                expected_seconds(
                    RollbackConfig.from_api(current.previous_spec.get("RollbackConfig")),
                    self._total(current, current.previous_spec),
                ),
            ),
            start=start,
            stale_update_status=current.update_status.started_at if current.update_status else None,
            phase="rollback",
            rollback_by="zdd_swarm",
        )
        tracker.rollback_reason = Reason("manual_rollback", "rollback requested")
        tracker.phase.preexisting = existing
        return self._follow(tracker, current, current, opts, "rollback", [])

    # -- steps ------------------------------------------------------------------

    def _prepare(self, service: str) -> ServiceView:
        if not service or not service.strip():
            raise ConfigError("service", service, "a service name or id")
        info = self.engine.info()
        if not info.is_manager:
            raise NotAManager(
                "the engine is not a swarm manager: service updates need one "
                "(point DOCKER_HOST / --host at a manager node)"
            )
        current = self.engine.inspect_service(service)
        if current.mode.job:
            raise UnsupportedServiceMode(
                f"service {current.name!r} is a {current.mode.value} service: its tasks run to "
                "completion and an update re-runs them, so there is no rollout to watch or roll "
                "back (Swarm's updater and its update config do not apply to jobs); re-run the "
                "job with `docker service update`, or deploy the workload as a replicated service"
            )
        return current

    def _image(self, change: ServiceChange) -> ResolvedImage | None:
        # as `docker service update --image`, which asks the registry only
        # when the image is given (docker/cli cli/command/service/update.go:
        # `if flags.Changed("image") { updateOpts.QueryRegistry = ... }`),
        # also for an image that has a digest (for its platforms)
        if change.image is None or not change.pin_digest:
            return None
        return self.engine.resolve_image(change.image)

    def _total(self, service: ServiceView, spec: Mapping[str, Any] | None = None) -> int:
        """The slots a rollout to ``spec`` (default: the service's own) ends
        with: its replicas (a change that also scales counts the new number),
        or for a global service the nodes it runs on now."""
        replicas = replicas_of(spec if spec is not None else service.spec)
        if replicas is not None:
            return replicas
        nodes = {
            t.node_id
            for t in self.engine.list_tasks(service.id)
            if t.desired_state is TaskState.RUNNING
        }
        return len(nodes)

    def _plan(
        self, current: ServiceView, new_spec: Mapping[str, Any], opts: RolloutOptions
    ) -> Plan:
        update = UpdateConfig.from_api(new_spec.get("UpdateConfig"))
        total = self._total(current, new_spec)
        parallelism = update.effective_parallelism(total) or 1
        batches = max(1, math.ceil(total / parallelism))
        health = ((new_spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get(
            "Healthcheck"
        )
        has_hc: bool | None
        interval = retries = start_period = None
        if health and health.get("Test") and health["Test"] != ["NONE"]:
            has_hc = True
        elif health and health.get("Test") == ["NONE"]:
            has_hc = False
        else:
            found = self.engine.image_healthcheck(image_of(new_spec))
            has_hc = None if found is None else bool(found)
            health = found if isinstance(found, Mapping) else None
        if health:
            interval = timedelta(microseconds=int(health.get("Interval") or 30e9) / 1000)
            retries = int(health.get("Retries") or 3)
            start_period = timedelta(microseconds=int(health.get("StartPeriod") or 0) / 1000)
        ports = (new_spec.get("EndpointSpec") or {}).get("Ports") or []
        warnings = [
            f"{w.code}: {w.message}"
            for w in lint(
                update,
                has_healthcheck=has_hc,
                host_mode_ports=any(p.get("PublishMode") == "host" for p in ports),
                healthcheck_interval=interval,
                healthcheck_retries=retries,
                healthcheck_start_period=start_period,
            )
        ]
        estimate = expected_seconds(update, total)
        rollback = expected_seconds(RollbackConfig.from_api(new_spec.get("RollbackConfig")), total)
        warnings += opts.deadline_warnings(estimate, rollback)
        return Plan(
            current.name,
            current.image,
            image_of(new_spec),
            diff_service_specs(current.spec, new_spec),
            total,
            batches,
            update,
            estimate,
            rollback,
            warnings,
        )

    def _send_update(
        self, current: ServiceView, new_spec: Mapping[str, Any], change: ServiceChange
    ) -> list[str]:
        """Send the update at the version we inspected. On "update out of
        sequence" re-inspect: if only the version moved (the engine writes
        its own status), retry; if the spec moved, someone else changed it:
        stop and say so."""
        service = current
        for _ in range(5):
            try:
                return self.engine.update_service(service, new_spec)
            except VersionConflict:
                fresh = self.engine.inspect_service(current.id)
                if spec_key(fresh.spec) != spec_key(current.spec):
                    changed = ", ".join(diff_specs(current.spec, fresh.spec)[:8])
                    raise ConcurrentChange(
                        f"service {current.name!r} was changed by another client while we "
                        f"prepared the update (changed: {changed}); nothing was sent"
                    ) from None
                service = fresh
        raise VersionConflict(f"service {current.name!r}: update out of sequence, 5 times")

    def _watch_current(self, current: ServiceView, opts: RolloutOptions) -> RolloutResult:
        _refuse_a_held_canary(current)
        start = self.clock.monotonic()
        state = current.state
        if state is None or (current.previous_spec is None and not state.rollback):
            return self._noop(
                current, start, "no_update_in_progress", "no update is in progress on this service"
            )
        if state in (
            UpdateState.COMPLETED,
            UpdateState.ROLLBACK_COMPLETED,
            UpdateState.ROLLBACK_PAUSED,
        ):
            # The update ended before we looked: report how, change nothing.
            # Whatever its tasks did since (a restart, a kill) is not part of
            # it. (A paused update is followed: it crosses ``engine_paused``.)
            return self._ended(current, start)
        total = self._total(current)
        if state.rollback:
            tracker = self._attach_rollback(current, opts, total)
            return self._follow(tracker, current, current, opts, "watch", [])
        assert current.previous_spec is not None
        update = UpdateConfig.from_api(current.spec.get("UpdateConfig"))
        rollback = RollbackConfig.from_api(current.previous_spec.get("RollbackConfig"))
        tracker = Tracker(
            current.name,
            original_spec=current.previous_spec,
            target_spec=current.spec,
            total=total,
            settings=opts.tracker_settings(
                expected_seconds(update, total), expected_seconds(rollback, total)
            ),
            start=start,
        )
        # tasks created before this update began (an earlier attempt at
        # the same spec) are not its failures; both times are the engine's
        begun = current.update_status.started_at if current.update_status else None
        if begun is not None:
            tracker.phase.preexisting = {
                t.id
                for t in self.engine.list_tasks(current.id)
                if t.created_at is not None and t.created_at < begun
            }
        return self._follow(tracker, current, current, opts, "watch", [])

    def _attach_rollback(self, current: ServiceView, opts: RolloutOptions, total: int) -> Tracker:
        """A tracker for a rollback in flight. After the engine's own
        rollback ``PreviousSpec`` is gone: the spec rolled back from is no
        longer known."""
        by = rollback_initiator(current)
        rollback = RollbackConfig.from_api(current.spec.get("RollbackConfig"))
        tracker = Tracker(
            current.name,
            original_spec=current.spec,
            target_spec=current.previous_spec or current.spec,
            total=total,
            settings=opts.tracker_settings(0.0, expected_seconds(rollback, total)),
            start=self.clock.monotonic(),
            phase="rollback",
            rollback_by=by,
        )
        status = current.update_status
        tracker.rollback_reason = rollback_reason(by, status.message if status else "")
        # tasks that already ended are not failures of this rollback
        tracker.phase.preexisting = {
            t.id for t in self.engine.list_tasks(current.id) if t.state.terminal
        }
        return tracker

    def _ended(self, current: ServiceView, start: float) -> RolloutResult:
        """The result of watching a service whose last update already ended."""
        status = current.update_status
        assert status is not None
        said = f" (the engine says: {status.message})" if status.message else ""
        outcome, code, message = {
            UpdateState.COMPLETED: (
                Outcome.COMPLETED,
                "already_completed",
                "the last update of the service completed before we looked; nothing to watch",
            ),
            UpdateState.ROLLBACK_COMPLETED: (
                Outcome.ROLLED_BACK,
                "already_rolled_back",
                f"the last update of the service was rolled back before we looked{said}",
            ),
            UpdateState.ROLLBACK_PAUSED: (
                Outcome.ROLLBACK_FAILED,
                "rollback_paused",
                f"the engine paused the rollback of the last update{said}",
            ),
        }[status.state]
        result = self._noop(current, start, code, message, emit=False)
        result.outcome = outcome
        if status.state.rollback:
            result.rollback_by = rollback_initiator(current)
        self._emit_finished(current.name, result)
        return result

    def _noop(
        self,
        current: ServiceView,
        start: float,
        code: str,
        message: str,
        after: ServiceView | None = None,
        *,
        emit: bool = True,
    ) -> RolloutResult:
        after = after or current
        result = RolloutResult(
            service=current.name,
            outcome=Outcome.COMPLETED,
            reason=Reason(code, message),
            started_at=self.clock.now(),
            duration_s=round(self.clock.monotonic() - start, 3),
            image_before=current.image,
            image_target=after.image,
            image_after=after.image,
            version_before=current.version,
            version_after=after.version,
            total=self._total(current),
        )
        if emit:
            self._emit_finished(current.name, result)
        return result

    def _emit_finished(self, name: str, result: RolloutResult) -> None:
        self._emit(
            name,
            RolloutFinished(
                name,
                result.duration_s,
                result.outcome.value,
                result.code,
                result.reason.message,
                result,
            ),
        )

    # -- the loop ---------------------------------------------------------------

    def _follow(
        self,
        tracker: Tracker,
        before: ServiceView,
        target: ServiceView,
        opts: RolloutOptions,
        phase: str,
        warnings: list[str],
    ) -> RolloutResult:
        name = before.name
        update = tracker.update_config
        before_image, after_image = image_of(tracker.original_spec), image_of(tracker.target_spec)
        if tracker.in_rollback:
            before_image, after_image = after_image, before_image
        self._emit(
            name,
            RolloutStarted(
                name,
                0.0,
                phase,
                image_before=before_image,
                image_after=after_image,
                version=target.version,
                total=tracker.total,
                parallelism=update.parallelism,
                order=update.order.value,
            ),
        )
        events = self._service_events(before.id)
        try:
            return self._loop(tracker, before, target, opts, phase, warnings, events)
        finally:
            if events is not None:
                events.close()

    def _service_events(self, service_id: str) -> ServiceEvents | None:
        opener = getattr(self.engine, "service_events", None)
        if opener is None:
            return None
        try:
            events: ServiceEvents | None = opener(service_id)
        except ZddError:
            return None  # polling alone
        return events

    def _pause(self, cadence: _TaskCadence, seconds: float, rolling_back: bool) -> None:
        """Sleep until the next poll; an event of the service ends it early.
        During a rollback an event that says it goes on (``updatestate.new``
        still ``rollback_started`` or ``updating``) is not worth a look: only
        its end is news."""
        events = cadence.events
        if events is None or not events.alive:
            self.clock.sleep(seconds)
        elif events.wait(seconds) and not (rolling_back and events.update_state in _GOING_ON):
            cadence.service_changed()

    def _loop(
        self,
        tracker: Tracker,
        before: ServiceView,
        target: ServiceView,
        opts: RolloutOptions,
        phase: str,
        warnings: list[str],
        events: ServiceEvents | None,
    ) -> RolloutResult:
        started_at = self.clock.now()
        poll = opts.poll_interval.total_seconds()
        # an update starts from the view inspected right after it was sent
        seen = _Seen(target, _TaskCadence(poll, events, fresh=phase == "update"))
        gates = _GateClock(poll)
        while True:
            now = self.clock.monotonic()
            try:
                self._look(before.id, seen, now, tracker.in_rollback)
            except ServiceNotFound:
                return self._finish(tracker, before, seen, _REMOVED, started_at, warnings)
            except EngineUnavailable as exc:
                self._outage(tracker, seen, now, exc, opts.engine_outage.total_seconds())
                self.clock.sleep(poll)
                continue
            now = self.clock.monotonic()
            if opts.gates and tracker.open_windows(now) and gates.due(now):
                for gate in opts.gates:
                    sample = gate.sample()
                    tracker.add_gate_sample(now, gate.name, sample.ok, sample.detail)
            step = tracker.observe(
                now, seen.service, seen.tasks, seen.nodes.names, seen.nodes.down, seen.nodes.drained
            )
            for event in step.events:
                self._emit(before.name, event)
            action = step.action
            if isinstance(action, RequestRollback):
                try:
                    self._roll_back(tracker, action, before.id, seen)
                except ServiceNotFound:
                    action = _REMOVED
            if isinstance(action, Finish):
                if phase == "rollback" and action.outcome is Outcome.ROLLED_BACK:
                    # the rollback asked for is this run's success: one outcome,
                    # in the result and in every event
                    action = Finish(
                        Outcome.COMPLETED,
                        Reason("rollback_completed", "rolled back to the previous spec"),
                    )
                return self._finish(tracker, before, seen, action, started_at, warnings)
            left = max(0.0, poll - (self.clock.monotonic() - now))
            self._pause(seen.cadence, left, tracker.in_rollback)

    def _look(self, service_id: str, seen: _Seen, now: float, rolling_back: bool) -> None:
        """One observation: the service, its tasks and the nodes, each when due."""
        cadence = seen.cadence
        if cadence.service_due():
            seen.service = self.engine.inspect_service(service_id)
        if cadence.tasks_due(now, seen.service, rolling_back=rolling_back):
            seen.tasks = self.engine.list_tasks(service_id)
            cadence.listed(now, seen.tasks, rolling_back=rolling_back)
        if seen.nodes.due(now, seen.service, seen.tasks):
            seen.nodes.listed(now, self.engine.list_nodes())
        seen.outage_since = None

    def _outage(
        self, tracker: Tracker, seen: _Seen, now: float, exc: EngineUnavailable, limit: float
    ) -> None:
        """The engine did not answer: an event, and the error once it has
        been unreachable for longer than ``limit`` seconds."""
        if seen.outage_since is None:
            seen.outage_since = now
        down_for = now - seen.outage_since
        elapsed = round(now - tracker.start, 3)
        name = tracker.service
        self._emit(name, EngineUnreachable(name, elapsed, str(exc), round(down_for, 3)))
        if down_for > limit:
            raise exc

    def _roll_back(
        self, tracker: Tracker, action: RequestRollback, service_id: str, seen: _Seen
    ) -> None:
        """Ask for the rollback at the version we hold, which the engine
        checks; if it moved since, look again once and decide on what is new."""
        if not self._request_rollback(tracker, action, seen.service):
            seen.service = self.engine.inspect_service(service_id)
            self._request_rollback(tracker, action, seen.service)
        seen.cadence.rollback_sent()

    def _request_rollback(
        self, tracker: Tracker, action: RequestRollback, service: ServiceView
    ) -> bool:
        """Send one rollback, guarded by the version of ``service``: the
        engine refuses an update at any other ("update out of sequence"),
        and then False is returned. If the service no longer runs our target
        (the engine's own rollback, or another client), nothing is sent: the
        next observation tells what happened."""
        now = self.clock.monotonic()
        tracker.rollback_requested = True
        if spec_key(service.spec) != spec_key(tracker.target_spec):
            return True
        previous = service.previous_spec
        method = "engine-rollback"
        try:
            if previous is not None and spec_key(previous) == spec_key(tracker.original_spec):
                self.engine.update_service(service, service.spec, rollback=True)
            else:
                method = "restore"
                self.engine.update_service(service, tracker.original_spec)
        except VersionConflict:
            tracker.rollback_requested = False
            return False
        step = tracker.begin_rollback(now, "zdd_swarm", action.reason, method)
        for event in step.events:
            self._emit(tracker.service, event)
        return True

    def _finish(
        self,
        tracker: Tracker,
        before: ServiceView,
        seen: _Seen,
        action: Finish,
        started_at: Any,
        warnings: list[str],
    ) -> RolloutResult:
        service, nodes = seen.service, seen.nodes.names
        placement: dict[str, list[str]] = {}
        for task in seen.tasks:
            if task.desired_state.value == "running" or task.running:
                node = nodes.get(task.node_id, task.node_id[:12] or "unassigned")
                placement.setdefault(node, []).append(
                    f"{task.id[:12]} {task.image} {task.state.value}"
                    + (f" ({task.error})" if task.error else "")
                )
        result = RolloutResult(
            service=before.name,
            outcome=action.outcome,
            reason=action.reason,
            started_at=started_at,
            duration_s=round(self.clock.monotonic() - tracker.start, 3),
            image_before=image_of(tracker.original_spec),
            image_target=image_of(tracker.target_spec),
            image_after=service.image,
            version_before=before.version,
            version_after=service.version,
            batches=tracker.batches,
            failures=tracker.failures,
            total=tracker.total,
            rollback_by=tracker.rollback_by,
            warnings=warnings,
            placement=placement,
        )
        self._emit_finished(before.name, result)
        return result

    def _emit(self, service: str, event: Event) -> None:
        fields = event.fields()
        logger = log.bind(service=service)
        if "batch" in fields:
            logger = logger.bind(batch=fields.pop("batch"))
        level: Callable[..., Any] = logger.info
        if event.name in _WARN_EVENTS:
            level = logger.warning
        elif isinstance(event, RolloutFinished) and event.outcome != "completed":
            level = logger.error if event.outcome == "rollback_failed" else logger.warning
        level(event.name, **fields)
        for hook in self.hooks:
            try:
                hook(event)
            except Exception:
                log.exception("hook_failed", service=service, hook=repr(hook))
