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
from typing import TYPE_CHECKING, Any

import structlog

from .clock import Clock, SystemClock
from .config import DurationLike, FailureAction, UpdateConfig, lint, parse_duration
from .engine import DockerEngine, Engine
from .errors import (
    ConfigError,
    EngineUnavailable,
    InputError,
    NotAManager,
    ServiceNotFound,
    VersionConflict,
)
from .events import EngineUnreachable, Event, Hook, RolloutFinished, RolloutStarted
from .gates import Gate, as_gate
from .model import (
    ResolvedImage,
    ServiceView,
    TaskState,
    TaskView,
    UpdateState,
    image_of,
    spec_key,
    task_template_key,
)
from .result import Outcome, Reason, RolloutResult
from .spec import ServiceChange, diff_specs
from .tracker import (
    Finish,
    RequestRollback,
    Tracker,
    TrackerSettings,
    rollback_initiator,
    rollback_reason,
)

__all__ = ["ConcurrentChange", "Controller", "Plan", "RolloutOptions", "UpdateInProgress"]

log = structlog.get_logger("zdd_swarm")

_WARN_EVENTS = {
    "task_failed",
    "gate_failed",
    "threshold_crossed",
    "rollback_started",
    "engine_unreachable",
}


class UpdateInProgress(InputError):
    """Another update of the service is in progress; we do not start a second."""


class ConcurrentChange(InputError):
    """The service changed between our inspect and our update; nothing was sent."""


def _duration(name: str, value: object, allow_none: bool = True) -> timedelta | None:
    if value is None:
        if allow_none:
            return None
        raise ConfigError(name, value, "a duration")
    result = parse_duration(value, name)  # type: ignore[arg-type]  # validated here
    if result <= timedelta(0):
        raise ConfigError(name, value, "a duration > 0")
    return result


@dataclass(frozen=True)
class RolloutOptions:
    """What zdd_swarm adds to Swarm's update config. Durations accept
    ``timedelta``, seconds, or compose strings (``"90s"``, ``"1m30s"``)."""

    failure_action: FailureAction = FailureAction.ROLLBACK
    """What to do when one of our thresholds is crossed (failure ratio, task or progress deadline,
    gate, timeout). Swarm's own ``failure_action`` in the update config still acts on its own
    inside the engine."""
    task_deadline: timedelta | None = timedelta(seconds=120)
    """A new task not RUNNING (healthy) this long after it appeared counts as failed."""
    progress_deadline: timedelta | None = timedelta(seconds=300)
    """No new task reached RUNNING for this long: the rollout failed."""
    timeout: timedelta | None = timedelta(minutes=30)
    """The whole update, rollback excluded."""
    rollback_timeout: timedelta = timedelta(minutes=5)
    """A rollback that has not finished after this long failed."""
    poll_interval: timedelta = timedelta(seconds=1)
    """How often to look at the engine (one or two Engine API requests each time)."""
    engine_outage: timedelta = timedelta(seconds=90)
    """How long the engine may be unreachable while we watch before we give up."""
    gates: tuple[Gate, ...] = ()
    """Checks run through each batch's monitor window."""

    if TYPE_CHECKING:
        # What the constructor accepts; the attributes hold the coerced types.
        def __init__(
            self,
            failure_action: FailureAction | str = ...,
            task_deadline: DurationLike | None = ...,
            progress_deadline: DurationLike | None = ...,
            timeout: DurationLike | None = ...,
            rollback_timeout: DurationLike = ...,
            poll_interval: DurationLike = ...,
            engine_outage: DurationLike = ...,
            gates: Sequence[Gate | Callable[[], bool]] = ...,
        ) -> None: ...

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        try:
            set_(
                self,
                "failure_action",
                FailureAction(
                    str(getattr(self.failure_action, "value", self.failure_action)).lower()
                ),
            )
        except ValueError:
            raise ConfigError(
                "failure_action", self.failure_action, "one of: continue, pause, rollback"
            ) from None
        for name in ("task_deadline", "progress_deadline", "timeout"):
            set_(self, name, _duration(name, getattr(self, name)))
        for name in ("rollback_timeout", "poll_interval", "engine_outage"):
            set_(self, name, _duration(name, getattr(self, name), allow_none=False))
        set_(self, "gates", tuple(as_gate(g) for g in self.gates))

    def tracker_settings(self) -> TrackerSettings:
        return TrackerSettings(
            failure_action=self.failure_action,
            task_deadline=self.task_deadline,
            progress_deadline=self.progress_deadline,
            timeout=self.timeout,
            rollback_timeout=self.rollback_timeout,
            gate_names=tuple(g.name for g in self.gates),
            gate_min_ratio={g.name: g.min_success_ratio for g in self.gates},
        )


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
    warnings: list[str] = field(default_factory=list)

    @property
    def noop(self) -> bool:
        return not self.changed


#: How often the node list is refreshed while watching (seconds).
_NODE_REFRESH = 10.0


class _TaskCadence:
    """What to ask the engine on each poll. While the tasks change, they are
    listed on every poll and the service is inspected on every other one: the
    tasks are what moves a rollout along then. While they are quiet (a
    monitor window, an update delay, a task still starting), the service is
    inspected on every poll (its ``UpdateStatus`` tells when the engine
    completes or pauses) and the tasks listed every ``QUIET_POLLS`` polls, or
    at once when the service changed. A watch thus costs at most 1.5 Engine
    API requests per second, plus the node list every ``_NODE_REFRESH``."""

    QUIET_POLLS = 3

    def __init__(self, poll: float) -> None:
        self.poll = poll
        self.interval = poll
        self.last_listed = -math.inf
        self.tasks_seen: object = None
        self.service_seen: object = None
        self.service_skipped = True

    def service_due(self) -> bool:
        due = self.interval > self.poll or self.service_skipped
        self.service_skipped = not due
        return due

    def service_changed(self) -> None:
        """We changed the service: inspect it on the next poll."""
        self.service_skipped = True

    def tasks_due(self, now: float, service: ServiceView) -> bool:
        seen = (service.version, service.update_status)
        changed, self.service_seen = seen != self.service_seen, seen
        # a little slack: a poll that wakes early still lists
        return changed or now - self.last_listed >= self.interval - self.poll / 10

    def listed(self, now: float, tasks: Sequence[TaskView]) -> None:
        seen = [(t.id, t.state, t.desired_state, t.node_id) for t in tasks]
        quiet = seen == self.tasks_seen
        self.tasks_seen, self.last_listed = seen, now
        self.interval = self.poll * (self.QUIET_POLLS if quiet else 1)


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
        return self._plan(current, new_spec)

    def update(
        self, service: str, change: ServiceChange, options: RolloutOptions | None = None
    ) -> RolloutResult:
        """Update ``service`` with ``change`` and follow it to an outcome."""
        opts = options or self.options
        current = self._prepare(service)
        new_spec = change.apply(current.spec, resolved=self._image(change))
        plan = self._plan(current, new_spec)
        if current.state in (UpdateState.UPDATING, UpdateState.ROLLBACK_STARTED):
            if spec_key(new_spec) == spec_key(current.spec) and current.previous_spec:
                log.info("attach", service=current.name, reason="same update already in progress")
                return self._watch_current(current, opts)
            raise UpdateInProgress(
                f"service {current.name!r}: an update is already in progress "
                f"({current.state.value}); use watch, or wait for it to end"
            )
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
        if task_template_key(target.spec.get("TaskTemplate") or {}) == current.task_key:
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
            settings=opts.tracker_settings(),
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
        existing = {t.id for t in self.engine.list_tasks(current.id)}
        start = self.clock.monotonic()
        self.engine.update_service(current, current.spec, rollback=True)
        tracker = Tracker(
            current.name,
            original_spec=current.previous_spec,
            target_spec=current.spec,
            total=self._total(current),
            settings=opts.tracker_settings(),
            start=start,
            stale_update_status=current.update_status.started_at if current.update_status else None,
            phase="rollback",
            rollback_by="zdd_swarm",
        )
        tracker.rollback_reason = Reason("manual_rollback", "rollback requested")
        tracker.phase.preexisting = existing
        result = self._follow(tracker, current, current, opts, "rollback", [])
        if result.outcome is Outcome.ROLLED_BACK:
            result.outcome = Outcome.COMPLETED
            result.reason = Reason("rollback_completed", "rolled back to the previous spec")
        return result

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
        return self.engine.inspect_service(service)

    def _image(self, change: ServiceChange) -> ResolvedImage | None:
        # as `docker service update --image`, which asks the registry only
        # when the image is given (docker/cli cli/command/service/update.go:
        # `if flags.Changed("image") { updateOpts.QueryRegistry = ... }`),
        # also for an image that has a digest (for its platforms)
        if change.image is None or not change.pin_digest:
            return None
        return self.engine.resolve_image(change.image)

    def _total(self, service: ServiceView) -> int:
        """Tasks the update replaces: the replicas, or for a global service
        the nodes it runs on now."""
        if service.replicas is not None:
            return service.replicas
        nodes = {
            t.node_id
            for t in self.engine.list_tasks(service.id)
            if t.desired_state is TaskState.RUNNING
        }
        return max(len(nodes), 1)

    def _plan(self, current: ServiceView, new_spec: Mapping[str, Any]) -> Plan:
        update = UpdateConfig.from_api(new_spec.get("UpdateConfig"))
        total = self._total(current)
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
        per_batch = 5.0 + update.delay.total_seconds()
        estimate = batches * per_batch + update.monitor.total_seconds()
        return Plan(
            current.name,
            current.image,
            image_of(new_spec),
            diff_specs(current.spec, new_spec),
            total,
            batches,
            update,
            round(estimate, 1),
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
        start = self.clock.monotonic()
        state = current.state
        if state is None or (current.previous_spec is None and not state.rollback):
            return self._noop(
                current, start, "no_update_in_progress", "no update is in progress on this service"
            )
        common = dict(total=self._total(current), settings=opts.tracker_settings(), start=start)
        if state.rollback:
            # after the engine's own rollback PreviousSpec is gone: the spec
            # rolled back from is no longer known
            by = rollback_initiator(current)
            tracker = Tracker(
                current.name,
                original_spec=current.spec,
                target_spec=current.previous_spec or current.spec,
                phase="rollback",
                rollback_by=by,
                **common,
            )  # type: ignore[arg-type]
            tracker.rollback_reason = rollback_reason(by, current.update_status.message)  # type: ignore[union-attr]
            # tasks that already ended are not failures of this rollback
            tracker.phase.preexisting = {
                t.id for t in self.engine.list_tasks(current.id) if t.state.terminal
            }
        else:
            assert current.previous_spec is not None
            tracker = Tracker(
                current.name,
                original_spec=current.previous_spec,
                target_spec=current.spec,
                **common,
            )  # type: ignore[arg-type]
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

    def _noop(
        self,
        current: ServiceView,
        start: float,
        code: str,
        message: str,
        after: ServiceView | None = None,
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
        self._emit(
            current.name,
            RolloutFinished(current.name, result.duration_s, "completed", code, message, result),
        )
        return result

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
        started_at = self.clock.now()
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
        nodes: dict[str, str] = {}
        down: set[str] = set()
        drained: set[str] = set()
        state_seen: object = None
        nodes_listed = -math.inf
        poll = opts.poll_interval.total_seconds()
        gate_interval = poll
        last_gate = -math.inf
        outage_since: float | None = None
        service = target
        tasks: list[TaskView] = []
        cadence = _TaskCadence(poll)
        removed = Finish(
            Outcome.SUPERSEDED,
            Reason("service_removed", "the service was removed while we watched it"),
        )
        while True:
            now = self.clock.monotonic()
            try:
                inspected = cadence.service_due()
                if inspected:
                    service = self.engine.inspect_service(before.id)
                if cadence.tasks_due(now, service):
                    tasks = self.engine.list_tasks(before.id)
                    cadence.listed(now, tasks)
                # node names for the report, and which nodes are down (a new
                # task on a down node never starts and the engine waits for
                # it) or drained (read again when the engine's state moves,
                # so that a pause can be told to be a drain's doing)
                status = service.update_status
                state = status.state if status is not None else None
                if (
                    now - nodes_listed >= _NODE_REFRESH
                    or state != state_seen
                    or any(t.node_id and t.node_id not in nodes for t in tasks)
                ):
                    listed = self.engine.list_nodes()
                    nodes = {n.id: n.hostname for n in listed}
                    down = {n.id for n in listed if n.state == "down"}
                    drained = {n.id for n in listed if n.availability == "drain"}
                    nodes_listed, state_seen = now, state
                outage_since = None
            except ServiceNotFound:
                return self._finish(
                    tracker, before, service, tasks, nodes, removed, started_at, warnings
                )
            except EngineUnavailable as exc:
                outage_since = outage_since if outage_since is not None else now
                down_for = now - outage_since
                self._emit(
                    name,
                    EngineUnreachable(
                        name, round(now - tracker.start, 3), str(exc), round(down_for, 3)
                    ),
                )
                if down_for > opts.engine_outage.total_seconds():
                    raise
                self.clock.sleep(poll)
                continue
            now = self.clock.monotonic()
            if opts.gates and tracker.open_windows(now) and now - last_gate >= gate_interval:
                last_gate = now
                for gate in opts.gates:
                    sample = gate.sample()
                    tracker.add_gate_sample(now, gate.name, sample.ok, sample.detail)
            step = tracker.observe(now, service, tasks, nodes, down, drained)
            for event in step.events:
                self._emit(name, event)
            action = step.action
            if isinstance(action, RequestRollback):
                try:
                    if not inspected:  # the rollback is guarded by the current version
                        service = self.engine.inspect_service(before.id)
                    self._request_rollback(tracker, action, service)
                except ServiceNotFound:
                    action = removed
                cadence.service_changed()  # what we hold predates our rollback
            if isinstance(action, Finish):
                return self._finish(
                    tracker, before, service, tasks, nodes, action, started_at, warnings
                )
            self.clock.sleep(max(0.0, poll - (self.clock.monotonic() - now)))

    def _request_rollback(
        self, tracker: Tracker, action: RequestRollback, service: ServiceView
    ) -> None:
        """Send one rollback, guarded by the version we just saw. If the
        engine moved in between (its own rollback, or another client), we do
        not send anything: the next observation tells what happened."""
        now = self.clock.monotonic()
        tracker.rollback_requested = True
        if spec_key(service.spec) != spec_key(tracker.target_spec):
            return
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
            return
        step = tracker.begin_rollback(now, "zdd_swarm", action.reason, method)
        for event in step.events:
            self._emit(tracker.service, event)

    def _finish(
        self,
        tracker: Tracker,
        before: ServiceView,
        service: ServiceView,
        tasks: Sequence[TaskView],
        nodes: Mapping[str, str],
        action: Finish,
        started_at: Any,
        warnings: list[str],
    ) -> RolloutResult:
        placement: dict[str, list[str]] = {}
        for task in tasks:
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
        self._emit(
            before.name,
            RolloutFinished(
                before.name,
                result.duration_s,
                result.outcome.value,
                result.code,
                result.reason.message,
                result,
            ),
        )
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
