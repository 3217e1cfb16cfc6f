"""Deploy a stack in waves, with one verdict and a coordinated rollback.

Each changed service rolls with ``Controller.update`` (its gates, deadlines,
events and hooks); a service the stack creates is watched until its tasks
run (healthy). When any service fails, everything this deploy changed is put
back, later waves first: updated services roll back to the spec they had,
created services, networks, secrets and configs are removed.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import json
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._logging import get_logger
from ..canary import (
    Canary,
    CanaryOutcome,
    CanaryResult,
    QueryContext,
    canary_status,
    watch_canary,
)
from ..canary.steps import step_text
from ..config import (
    TASK_START_ALLOWANCE,
    RollbackConfig,
    RolloutOptions,
    UpdateConfig,
    expected_seconds,
)
from ..controller import Controller
from ..engine import DockerEngine, StackEngine, SwarmObject
from ..errors import (
    ConfigError,
    EngineError,
    InputError,
    NotAManager,
    ServiceNotFound,
    UnsupportedServiceMode,
    UpdateInProgress,
    ZddError,
)
from ..events import Hook
from ..model import (
    ResolvedImage,
    ServiceView,
    TaskState,
    UpdateState,
    image_of,
    replicas_of,
    task_template_key,
)
from ..result import Outcome, RolloutResult
from ..spec import ServiceChange, diff_service_specs, pin_image
from .compose import LABEL_IMAGE, LABEL_NAMESPACE, ObjectSpec, StackSpec, load_stack

__all__ = [
    "ResolveImage",
    "ServiceAction",
    "ServiceReport",
    "StackOutcome",
    "StackPlan",
    "StackResult",
    "deploy_stack",
    "plan_stack",
    "watch_stack",
]

log = get_logger("zdd_swarm.stack")

_DEFAULTS: dict[str, Any] = {"Isolation": "default", "Runtime": "container"}


#: Task errors of a node that clear by themselves. libnetwork's IPAM answers
#: "Pool overlaps with other one on this address space" when a new overlay
#: network gets the subnet of one the node has not removed yet (seen on the
#: lab when a stack is deployed right after another was removed); Swarm
#: schedules a new task, which starts once the node caught up.
TRANSIENT_REJECTIONS = ("Pool overlaps with other one on this address space",)


class ServiceAction(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    PRUNE = "prune"
    """in the stack, not in the compose files: removed once the deploy landed (``prune``)"""


class ResolveImage(enum.StrEnum):
    """When the registry is asked for an image's digest, which the service
    is then pinned to (``docker stack deploy --resolve-image``)."""

    ALWAYS = "always"
    CHANGED = "changed"
    """only for images that differ from the compose image of the last deploy"""
    NEVER = "never"


class StackOutcome(enum.StrEnum):
    """The stack's one verdict; the exit codes are those of ``update``."""

    COMPLETED = "completed"
    """Every change landed (or there was nothing to do)."""
    ROLLED_BACK = "rolled_back"
    """A service failed; everything this deploy changed was put back."""
    ROLLBACK_FAILED = "rollback_failed"
    """A service failed and something could not be put back (named in the result)."""

    @property
    def exit_code(self) -> int:
        return {"completed": 0, "rolled_back": 1, "rollback_failed": 4}[self.value]


@dataclass
class ServiceReport:
    """One service of the stack: what the deploy did to it, and how it ended."""

    service: str
    action: ServiceAction
    wave: int
    changed: list[str] = field(default_factory=list)
    """dotted paths of the spec that differ (no values: env may hold secrets)"""
    outcome: str = "not_started"
    """completed, rolled_back, put_back, removed, unchanged, not_started, failed,
    not_put_back"""
    reason: str = ""
    result: RolloutResult | None = None
    estimated_seconds: float = 0.0
    """the expected duration of its rollout (as ``zdd-swarm update --dry-run``)"""
    steps: list[str] = field(default_factory=list)
    """its canary's steps, when it goes out as one (``x-zdd-swarm``)"""


def _expected(spec: Mapping[str, Any]) -> float:
    replicas = replicas_of(spec) or 1
    return expected_seconds(UpdateConfig.from_api(spec.get("UpdateConfig")), replicas)


@dataclass
class StackPlan:
    stack: StackSpec
    services: list[ServiceReport]
    create_objects: list[ObjectSpec]
    estimated_seconds: float = 0.0

    def lines(self) -> list[str]:
        """The plan for people: wave by wave, what is created, updated or left."""
        out = [f"stack {self.stack.name}: expected {self.estimated_seconds:.0f}s"]
        for obj in self.create_objects:
            out.append(f"  create {obj.kind} {obj.name}")
        for index in range(len(self.stack.waves)):
            out.append(f"  wave {index}:")
            for report in self.services:
                if report.wave != index:
                    continue
                detail = f" ({', '.join(report.changed)})" if report.changed else ""
                if report.steps:
                    detail += f" as a canary: {', '.join(report.steps)}"
                took = f", ~{report.estimated_seconds:.0f}s" if report.estimated_seconds else ""
                out.append(f"    {report.action.value} {report.service}{detail}{took}")
        pruned = [r.service for r in self.services if r.action is ServiceAction.PRUNE]
        if pruned:
            out.append(f"  once every change landed, remove: {', '.join(pruned)}")
        return out


@dataclass
class StackResult:
    stack: str
    outcome: StackOutcome
    reason: str
    services: list[ServiceReport]
    duration_s: float
    not_put_back: list[str] = field(default_factory=list)
    """what could not be put back (services, networks, secrets, configs), by name"""

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code

    def summary(self) -> str:
        parts = [f"{r.service}: {r.outcome}" for r in self.services]
        return (
            f"stack {self.stack}: {self.outcome.value} in {self.duration_s:.1f}s: "
            f"{self.reason} [{'; '.join(parts)}]"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "outcome": self.outcome.value,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "duration_s": self.duration_s,
            "not_put_back": list(self.not_put_back),
            "services": [
                {
                    "service": r.service,
                    "action": r.action.value,
                    "wave": r.wave,
                    "changed": list(r.changed),
                    "steps": list(r.steps),
                    "outcome": r.outcome,
                    "reason": r.reason,
                    "code": r.result.code if r.result else None,
                }
                for r in self.services
            ],
        }


def _pruned(value: Any) -> Any:
    """A spec without what the engine fills in by itself (empty sections,
    false, zero, ``Isolation: default``, ``Runtime: container``)."""
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            item = _pruned(item)
            if item in (None, {}, [], "", False, 0) or _DEFAULTS.get(key) == item:
                continue
            result[key] = item
        return result
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _changes(desired: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    before = dict(current)
    before.pop("TaskTemplate", None)
    template = copy.deepcopy(dict(current.get("TaskTemplate") or {}))
    template.pop("ForceUpdate", None)
    after_template = copy.deepcopy(dict(desired.get("TaskTemplate") or {}))
    after_template.pop("ForceUpdate", None)
    return diff_service_specs(
        _pruned({**before, "TaskTemplate": template}),
        _pruned({**dict(desired), "TaskTemplate": after_template}),
    )


class _Deploy:
    def __init__(
        self,
        stack: StackSpec,
        engine: StackEngine,
        controller: Controller,
        options: RolloutOptions,
        resolve_image: ResolveImage = ResolveImage.NEVER,
        prune: bool = False,
    ) -> None:
        self.stack = stack
        self.engine = engine
        self.controller = controller
        self.options = options
        self.resolve_image = resolve_image
        self.prune = prune
        self.resolved: dict[str, ResolvedImage] = {}
        self.labels = {LABEL_NAMESPACE: stack.name}
        self.ids: dict[tuple[str, str], str] = {}
        self.created_objects: list[tuple[str, str, str]] = []  # kind, id, name
        self.record = _Record(stack.name, engine)
        #: service name -> its canary (x-zdd-swarm steps)
        self.canaries = {stack.services[k]["Name"]: c for k, c in stack.canaries.items()}

    # -- planning ---------------------------------------------------------------

    def plan(self, *, dry_run: bool = False) -> StackPlan:
        info = self.engine.info()
        if not info.is_manager:
            raise NotAManager("the engine is not a swarm manager: point DOCKER_HOST at a manager")
        existing = {s.name: s for s in self.engine.list_services(self.labels)}
        missing: list[ObjectSpec] = []
        for kind in ("network", "secret", "config"):
            wanted = [o for o in self.stack.objects if o.kind == kind]
            if not wanted:
                continue
            found = self._by_name(kind, external=any(o.external for o in wanted))
            for obj in wanted:
                if obj.name in found:
                    self.ids[(kind, obj.name)] = found[obj.name].id
                elif obj.external:
                    raise InputError(f"external {kind} {obj.name!r} not found")
                else:
                    missing.append(obj)
        reports = []
        self.current: dict[str, ServiceView] = {}
        self.desired: dict[str, dict[str, Any]] = {}
        for index, wave in enumerate(self.stack.waves):
            for key in wave:
                spec = self.stack.services[key]
                name = spec["Name"]
                current = existing.get(name)
                desired = self._resolved(spec, current)
                self.desired[name] = desired
                if current is None:
                    created = ServiceReport(name, ServiceAction.CREATE, index)
                    created.estimated_seconds = TASK_START_ALLOWANCE.total_seconds()
                    reports.append(created)
                    continue
                self.current[name] = current
                changed = _changes(desired, current.spec)
                busy = current.state in (UpdateState.UPDATING, UpdateState.ROLLBACK_STARTED)
                if changed and busy and current.state is not None and not dry_run:
                    raise UpdateInProgress(
                        f"service {name!r}: an update is already in progress "
                        f"({current.state.value}); wait for it, or use zdd-swarm watch"
                    )
                action = ServiceAction.UPDATE if changed else ServiceAction.UNCHANGED
                report = ServiceReport(name, action, index, changed)
                if changed and self._as_canary(name, desired, current):
                    self._check_canary(name, desired, current)
                    report.steps = [step_text(s) for s in self.canaries[name].steps]
                if changed:
                    report.estimated_seconds = _expected(desired)
                reports.append(report)
        if self.prune:
            names = {spec["Name"] for spec in self.stack.services.values()}
            last = len(self.stack.waves)
            reports += [
                ServiceReport(name, ServiceAction.PRUNE, last)
                for name in sorted(existing)
                if name not in names
            ]
        return StackPlan(
            self.stack, reports, missing, round(sum(r.estimated_seconds for r in reports), 1)
        )

    def _by_name(self, kind: str, external: bool) -> dict[str, SwarmObject]:
        labels = {} if external else self.labels
        return {o.name: o for o in self.engine.list_objects(kind, labels)}

    def _resolved(self, spec: Mapping[str, Any], current: ServiceView | None) -> dict[str, Any]:
        """``spec`` with network, secret and config ids filled in (the engine
        stores ids), the current image kept where the compose image did not
        change, and the current ``ForceUpdate``."""
        result = copy.deepcopy(dict(spec))
        template = result["TaskTemplate"]
        container = template["ContainerSpec"]
        for network in template.get("Networks") or []:
            network["Target"] = self.ids.get(("network", network["Target"]), network["Target"])
        for kind, name_key, id_key in (
            ("secret", "SecretName", "SecretID"),
            ("config", "ConfigName", "ConfigID"),
        ):
            for ref in container.get(kind.capitalize() + "s") or []:
                ref[id_key] = self.ids.get((kind, ref[name_key]), "")
        image = container["Image"]
        # docker/cli stack/swarm/deploy_composefile.go (deployServices):
        #   case resolveImage == ResolveImageAlways || (resolveImage ==
        #       ResolveImageChanged && image != service.Spec.Labels[convert.LabelImage]):
        #       updateOpts.QueryRegistry = true
        #   case image == service.Spec.Labels[convert.LabelImage]:
        #       serviceSpec.TaskTemplate.ContainerSpec.Image =
        #           service.Spec.TaskTemplate.ContainerSpec.Image
        # and for a new service: "if resolveImage == ResolveImageAlways ||
        # resolveImage == ResolveImageChanged { createOpts.QueryRegistry = true }";
        # also "Preserve existing ForceUpdate value so that tasks are not
        # re-deployed if not updated".
        old = current.spec if current is not None else {}
        same = current is not None and image == (old.get("Labels") or {}).get(LABEL_IMAGE)
        policy = self.resolve_image
        if policy is ResolveImage.ALWAYS or (policy is ResolveImage.CHANGED and not same):
            pin_image(template, image, self._resolve(image))
        elif same:
            container["Image"] = old["TaskTemplate"]["ContainerSpec"]["Image"]
            # and the platforms a resolved image brought, unless the file sets some
            platforms = (old["TaskTemplate"].get("Placement") or {}).get("Platforms")
            placement = template.get("Placement") or {}
            if platforms and not placement.get("Platforms"):
                template["Placement"] = {**placement, "Platforms": platforms}
        if current is not None:
            template["ForceUpdate"] = (old.get("TaskTemplate") or {}).get("ForceUpdate", 0)
        return result

    def _resolve(self, image: str) -> ResolvedImage:
        """The registry's answer for ``image``, asked once per deploy."""
        if image not in self.resolved:
            self.resolved[image] = self.engine.resolve_image(image)
        return self.resolved[image]

    # -- deploying ----------------------------------------------------------------

    def run(self, plan: StackPlan) -> StackResult:
        start = self.controller.clock.monotonic()
        done: list[ServiceReport] = []
        failed: ServiceReport | None = None
        changing = [
            r for r in plan.services if r.action in (ServiceAction.CREATE, ServiceAction.UPDATE)
        ]
        if changing or plan.create_objects:
            self.record.write("rolling", done, changing, plan.create_objects)
        try:
            for obj in plan.create_objects:
                object_id = self.engine.create_object(obj.kind, obj.to_api())
                log.info(
                    "stack_object_created", stack=self.stack.name, kind=obj.kind, name=obj.name
                )
                self.ids[(obj.kind, obj.name)] = object_id
                self.created_objects.append((obj.kind, object_id, obj.name))
            for report in plan.services:
                if report.action is ServiceAction.UNCHANGED:
                    report.outcome = "unchanged"
            for index in range(len(self.stack.waves)):
                wave = [r for r in changing if r.wave == index]
                if not wave:
                    continue
                done += wave
                self.record.write("rolling", done, changing, plan.create_objects)
                failed = self._roll_wave(wave)
                if failed is not None:
                    break
        except ZddError as exc:
            if not done and not self.created_objects:
                raise
            last = done[-1] if done else None
            if last is not None and last.outcome == "not_started":
                last.outcome, last.reason = "failed", str(exc)
            failed = last or ServiceReport(self.stack.name, ServiceAction.UPDATE, 0)
            failed.reason = failed.reason or str(exc)
        if failed is None:
            self.record.clear()
            reason = "every change landed" if done else "nothing to do"
            return StackResult(
                self.stack.name,
                StackOutcome.COMPLETED,
                reason + self._prune_services(plan.services),
                plan.services,
                self.controller.clock.monotonic() - start,
            )
        self.record.write("putting_back", done, changing, plan.create_objects, failed)
        return self._finish_put_back(done, failed, plan.services, start)

    def _prune_services(self, services: list[ServiceReport]) -> str:
        """Remove the stack's services the compose files no longer name, once
        every change landed, so a deploy that fails has nothing to recreate.
        docker/cli prunes services only (``pruneServices``: "removes services
        that are no longer referenced in the source"), and before it deploys.
        Returns what the stack's reason adds: the services not removed."""
        left = []
        for report in services:
            if report.action is not ServiceAction.PRUNE:
                continue
            try:
                with contextlib.suppress(ServiceNotFound):
                    self.engine.remove_service(report.service)
                report.outcome = "removed"
                log.info("stack_service_pruned", stack=self.stack.name, service=report.service)
            except ZddError as exc:
                report.outcome, report.reason = "not_removed", str(exc)
                left.append(report.service)
        return f"; not removed: {', '.join(left)}" if left else ""

    def _finish_put_back(
        self,
        done: list[ServiceReport],
        failed: ServiceReport,
        services: list[ServiceReport],
        start: float,
    ) -> StackResult:
        not_put_back = self._put_back(done, failed)
        self.record.clear()
        outcome = StackOutcome.ROLLBACK_FAILED if not_put_back else StackOutcome.ROLLED_BACK
        reason = f"{failed.service} failed: {failed.reason}"
        if not_put_back:
            reason += f"; not put back: {', '.join(not_put_back)}"
        return StackResult(
            self.stack.name,
            outcome,
            reason,
            services,
            self.controller.clock.monotonic() - start,
            not_put_back,
        )

    def _roll_wave(self, wave: list[ServiceReport]) -> ServiceReport | None:
        """Roll the services of one wave together, each to its own verdict
        (one process follows many rollouts: tests/integration/test_scale.py);
        the first that failed, in the wave's order, or None."""
        if len(wave) == 1:
            landed = [self._roll_guarded(wave[0])]
        else:
            with ThreadPoolExecutor(len(wave), thread_name_prefix="zdd-stack") as pool:
                landed = list(pool.map(self._roll_guarded, wave))
        return next((r for r, ok in zip(wave, landed, strict=True) if not ok), None)

    def _roll_guarded(self, report: ServiceReport) -> bool:
        """``_roll``, with an error of the engine or of the service's input
        (raised once the deploy has begun) as that service's failure."""
        try:
            return self._roll(report)
        except ZddError as exc:
            report.outcome, report.reason = "failed", str(exc)
            return False

    def _roll(self, report: ServiceReport) -> bool:
        name = report.service
        desired = self._resolved(self.desired[name], self.current.get(name))
        if report.action is ServiceAction.CREATE:
            self.engine.create_service(desired)
            log.info("stack_service_created", stack=self.stack.name, service=name)
            ok, why = self._wait_running(name, desired)
            report.outcome, report.reason = ("completed" if ok else "failed"), why
            return ok
        change = ServiceChange(patch=lambda _spec: copy.deepcopy(desired))
        if report.steps:  # the plan found it goes out as a canary
            return self._roll_canary(report, change)
        result = self.controller.update(name, change, self.options)
        report.result = result
        report.outcome, report.reason = result.outcome.value, result.reason.message
        return result.outcome is Outcome.COMPLETED

    def _as_canary(self, name: str, desired: Mapping[str, Any], current: ServiceView) -> bool:
        """A service with steps goes out as a canary when its tasks change (a
        change of labels or update settings alone replaces no task)."""
        template = desired.get("TaskTemplate") or {}
        return name in self.canaries and task_template_key(template) != current.task_key

    def _check_canary(self, name: str, desired: Mapping[str, Any], current: ServiceView) -> None:
        """What ``Canary.run`` checks before it sends anything, for every
        service of the stack before the deploy changes anything."""
        canary = self.canaries[name]
        replicas = replicas_of(desired)
        if replicas is None:
            raise UnsupportedServiceMode(f"service {name!r}: a canary needs replicas")
        canary.check(replicas, QueryContext(name, current.image, image_of(desired)))

    def _roll_canary(self, report: ServiceReport, change: ServiceChange) -> bool:
        """The service's canary, held by Swarm's updater at each step
        (zdd_swarm/canary/driver.py); aborted, every task is back on the
        spec it had before the deploy."""
        controller = self.controller
        spec = self.canaries[report.service]
        canary = Canary(self.engine, spec, clock=controller.clock, hooks=controller.hooks)
        return self._canary_report(report, canary.run(report.service, change))

    @staticmethod
    def _canary_report(report: ServiceReport, result: CanaryResult) -> bool:
        report.outcome = {
            CanaryOutcome.COMPLETED: "completed",
            CanaryOutcome.ROLLED_BACK: Outcome.ROLLED_BACK.value,
            CanaryOutcome.ROLLBACK_FAILED: Outcome.ROLLBACK_FAILED.value,
        }.get(result.outcome, "failed")
        report.reason = f"canary {result.outcome.value}: {result.reason}"
        return result.outcome is CanaryOutcome.COMPLETED

    def _settle(self, report: ServiceReport) -> bool:
        """The outcome of the service that was rolling when the deploying
        process died: a created one is waited for, an update watched."""
        name = report.service
        try:
            view = self.engine.inspect_service(name)
        except ServiceNotFound:
            report.outcome, report.reason = "not_started", "not created"
            return False
        if report.action is ServiceAction.CREATE:
            ok, why = self._wait_running(name, view.spec)
            report.outcome, report.reason = ("completed" if ok else "failed"), why
            return ok
        if canary_status(self.engine, name) is not None:
            # its steps and analyses are in the canary's own record
            canary = watch_canary(self.engine, name, clock=self.controller.clock)
            return self._canary_report(report, canary)
        if view.state in (UpdateState.UPDATING, UpdateState.ROLLBACK_STARTED):
            result = self.controller.watch(name, self.options)
            report.result = result
            report.outcome, report.reason = result.outcome.value, result.reason.message
            return result.outcome is Outcome.COMPLETED
        if view.state is UpdateState.ROLLBACK_COMPLETED:
            report.outcome, report.reason = "rolled_back", "rolled back"
            return False
        if view.state is UpdateState.COMPLETED or view.state is None:
            report.outcome, report.reason = "completed", "landed"
            return True
        report.outcome, report.reason = "failed", f"update {view.state.value}"
        return False

    def _wait_running(self, name: str, spec: Mapping[str, Any]) -> tuple[bool, str]:
        """A created service is up when as many tasks run (healthy) as it
        has replicas. It failed when as many tasks failed as it has replicas
        (at least two), or when the task deadline passed first. A task a
        node rejected for a passing reason (``TRANSIENT_REJECTIONS``: its
        network's subnet still held by an overlay network the node has not
        cleaned up yet) is not counted: Swarm replaces it, and the deadline
        still bounds the wait."""
        clock = self.controller.clock
        deadline = self.options.task_deadline
        limit = deadline.total_seconds() if deadline is not None else 300.0
        start = clock.monotonic()
        replicas = ((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas")
        view = self.engine.inspect_service(name)
        while True:
            tasks = [t for t in self.engine.list_tasks(view.id)]
            running = [t for t in tasks if t.state is TaskState.RUNNING]
            broken = [
                t
                for t in tasks
                if t.state in (TaskState.FAILED, TaskState.REJECTED)
                and not any(reason in t.error for reason in TRANSIENT_REJECTIONS)
            ]
            wanted = replicas if replicas is not None else max(len(tasks) - len(broken), 1)
            if broken and len(broken) >= max(wanted, 2):
                task = broken[-1]
                return False, (
                    f"{len(broken)} tasks failed; task {task.id[:12]} {task.state.value}: "
                    f"{task.error or task.message}"
                )
            if len(running) >= wanted:
                return True, f"{len(running)} tasks running"
            if clock.monotonic() - start > limit:
                return False, f"not running after {limit:.0f}s ({len(running)} of {wanted} tasks)"
            clock.sleep(self.options.poll_interval.total_seconds())

    # -- putting back ---------------------------------------------------------------

    def _put_back(self, done: list[ServiceReport], failed: ServiceReport) -> list[str]:
        """Later waves first: roll updated services back, remove created
        ones, then the objects this deploy created."""
        not_put_back: list[str] = []
        for report in reversed(done):
            name = report.service
            try:
                if report.action is ServiceAction.CREATE:
                    with contextlib.suppress(ServiceNotFound):
                        self.engine.remove_service(name)
                    report.outcome = "removed"
                    continue
                if report.outcome == Outcome.ROLLED_BACK.value:
                    continue  # the controller put it back already
                if report.outcome == Outcome.ROLLBACK_FAILED.value:
                    not_put_back.append(name)
                    continue
                result = self._roll_back(name)
                if result is None:
                    report.outcome = "put_back"
                    continue
                if result.outcome in (Outcome.COMPLETED, Outcome.ROLLED_BACK):
                    report.outcome = "put_back"
                else:
                    report.outcome = "not_put_back"
                    not_put_back.append(name)
                report.reason = (
                    report.reason if report is failed else f"put back: {result.reason.message}"
                )
            except ZddError as exc:
                log.warning("stack_put_back_failed", service=name, error=str(exc))
                report.outcome, report.reason = "not_put_back", str(exc)
                not_put_back.append(name)
        for kind, object_id, name in reversed(self.created_objects):
            if not self._remove_object(kind, object_id):
                not_put_back.append(f"{kind} {name}")
        return not_put_back

    def _roll_back(self, name: str) -> RolloutResult | None:
        """Roll ``name`` back to its previous spec and watch it; a rollback
        already under way is watched, one already done is left (None). A
        service that went out as a canary gets the spec it had before the
        deploy back explicitly: after a canary its previous spec is the last
        step's, with the new release (zdd_swarm/canary/driver.py)."""
        if name in self.canaries and name in self.current:
            original = copy.deepcopy(dict(self.current[name].spec))
            change = ServiceChange(patch=lambda _spec: original)
            return self.controller.update(name, change, self.options)
        view = self.engine.inspect_service(name)
        if view.state is UpdateState.ROLLBACK_COMPLETED:
            return None
        if view.state in (UpdateState.UPDATING, UpdateState.ROLLBACK_STARTED):
            result = self.controller.watch(name, self.options)
            if (
                view.state is UpdateState.ROLLBACK_STARTED
                or result.outcome is not Outcome.COMPLETED
            ):
                return result
        return self.controller.rollback(name, self.options)

    def _remove_object(self, kind: str, object_id: str) -> bool:
        """Removed once no task uses it any more (a removed service's tasks
        take a moment to go)."""
        clock = self.controller.clock
        start = clock.monotonic()
        while True:
            try:
                self.engine.remove_object(kind, object_id)
                return True
            except EngineError as exc:
                if getattr(exc, "status_code", None) == 404:
                    return True
                if clock.monotonic() - start > 60:
                    log.warning("stack_object_not_removed", kind=kind, id=object_id, error=str(exc))
                    return False
                clock.sleep(1.0)


RECORD_LABEL = "com.zdd-swarm.stack.deploy"


class _Record:
    """The deploy in flight, kept with the stack so that ``watch_stack`` can
    finish it after the deploying process died: a config named
    ``STACK_zdd-swarm-deploy`` (labelled with the stack, so ``docker stack
    rm`` removes it too), the state in its ``com.zdd-swarm.stack.deploy``
    label as JSON: the phase, the services started so far, those still to
    roll, and the objects this deploy creates. Names only, never a value."""

    def __init__(self, stack: str, engine: StackEngine) -> None:
        self.stack = stack
        self.engine = engine
        self.name = f"{stack}_zdd-swarm-deploy"

    def _existing(self) -> list[SwarmObject]:
        found = self.engine.list_objects("config", {LABEL_NAMESPACE: self.stack})
        return [o for o in found if o.name == self.name]

    def read(self) -> dict[str, Any] | None:
        for obj in self._existing():
            with contextlib.suppress(ValueError, TypeError):
                data = json.loads(obj.labels.get(RECORD_LABEL, ""))
                if isinstance(data, dict):
                    return data
        return None

    def write(
        self,
        phase: str,
        done: Sequence[ServiceReport],
        changing: Sequence[ServiceReport],
        objects: Sequence[ObjectSpec],
        failed: ServiceReport | None = None,
    ) -> None:
        state = {
            "phase": phase,
            "started": [[r.service, r.action.value, r.wave] for r in done],
            "remaining": [r.service for r in changing if r not in done],
            "objects": [[o.kind, o.name] for o in objects],
            "failed": [failed.service, failed.reason] if failed else None,
        }
        self.put(state)

    def put(self, state: Mapping[str, Any]) -> None:
        self.clear()
        # a config's data cannot change: the record is replaced whole
        self.engine.create_object(
            "config",
            {
                "Name": self.name,
                "Labels": {LABEL_NAMESPACE: self.stack, RECORD_LABEL: json.dumps(state)},
                "Data": b"zdd-swarm stack deploy in flight\n",
            },
        )

    def clear(self) -> None:
        for obj in self._existing():
            with contextlib.suppress(EngineError):
                self.engine.remove_object("config", obj.id)


def watch_stack(
    stack: str,
    *,
    engine: StackEngine | None = None,
    controller: Controller | None = None,
    options: RolloutOptions | None = None,
) -> StackResult:
    """Finish a stack deploy whose process died (``zdd-swarm stack watch``).

    The services that were rolling (the last wave begun) are watched to
    their outcome. If they landed and it was the last wave, the deploy is
    complete. Otherwise (one failed, or services were still to roll: their
    specs went with the process) every
    service the deploy changed is put back and what it created is removed,
    as the deploy itself would have. A put-back already under way is
    carried on. Without a deploy in flight there is nothing to do.
    """
    if controller is None:
        controller = Controller(engine if engine is not None else DockerEngine())
    the_engine: Any = engine if engine is not None else controller.engine
    deploy = _Deploy(
        StackSpec(stack, {}, [], []), the_engine, controller, options or controller.options
    )
    start = controller.clock.monotonic()
    state = deploy.record.read()
    if state is None:
        return StackResult(stack, StackOutcome.COMPLETED, "no stack deploy in flight", [], 0.0)
    reports = [
        ServiceReport(str(name), ServiceAction(str(action)), int(wave), outcome="completed")
        for name, action, wave in state.get("started") or []
    ]
    for kind, name in state.get("objects") or []:
        for obj in the_engine.list_objects(str(kind), {LABEL_NAMESPACE: stack}):
            if obj.name == name:
                deploy.created_objects.append((str(kind), obj.id, obj.name))
    failed = _failed_in_flight(deploy, state, reports)
    if failed is None:
        deploy.record.clear()
        return StackResult(
            stack,
            StackOutcome.COMPLETED,
            "the deploy in flight landed",
            reports,
            controller.clock.monotonic() - start,
        )
    deploy.record.put({**state, "phase": "putting_back", "failed": [failed.service, failed.reason]})
    return deploy._finish_put_back(reports, failed, reports, start)


def _failed_in_flight(
    deploy: _Deploy, state: Mapping[str, Any], reports: list[ServiceReport]
) -> ServiceReport | None:
    """What failed of a deploy whose process died, after the services of its
    last wave begun (which rolled together) have each settled; None if it
    landed."""
    stack = deploy.stack.name
    remaining = [str(n) for n in state.get("remaining") or []]
    if state.get("phase") == "putting_back":
        name, why = state.get("failed") or [stack, "the deploy failed"]
        failed = next((r for r in reports if r.service == name), None)
        failed = failed or ServiceReport(str(name), ServiceAction.UPDATE, 0)
        failed.reason = str(why)
        for report in reports:
            report.outcome = "unknown"
        return failed
    if reports:
        rolling = [r for r in reports if r.wave == reports[-1].wave]
        settled = [deploy._settle(r) for r in rolling]
        failed = next((r for r, ok in zip(rolling, settled, strict=True) if not ok), None)
        if failed is None and remaining:
            failed = reports[-1]
            failed.reason = (
                f"the deploy stopped before {', '.join(remaining)} rolled; "
                "everything it changed is put back"
            )
        return failed
    if remaining:
        failed = ServiceReport(stack, ServiceAction.UPDATE, 0)
        failed.reason = "the deploy stopped before any service rolled"
        return failed
    return None


def _setup(
    files: Sequence[str | Path],
    stack: str,
    engine: StackEngine | None,
    controller: Controller | None,
    hooks: Sequence[Hook],
    options: RolloutOptions | None,
    environment: Mapping[str, str] | None,
    update_config: UpdateConfig | None = None,
    rollback_config: RollbackConfig | None = None,
    resolve_image: ResolveImage | str = ResolveImage.NEVER,
    prune: bool = False,
) -> _Deploy:
    try:
        policy = ResolveImage(resolve_image)
    except ValueError:
        raise ConfigError("resolve_image", resolve_image, "always, changed or never") from None
    spec = load_stack(files, stack, environment=environment)
    for service in spec.services.values():
        # the defaults given (the CLI's --update-* flags) for a service
        # whose compose entry has no update_config / rollback_config
        if update_config is not None and "UpdateConfig" not in service:
            service["UpdateConfig"] = update_config.to_api()
        if rollback_config is not None and "RollbackConfig" not in service:
            service["RollbackConfig"] = rollback_config.to_api()
    if controller is None:
        controller = Controller(engine if engine is not None else DockerEngine(), hooks=hooks)
    the_engine: Any = engine if engine is not None else controller.engine
    return _Deploy(spec, the_engine, controller, options or controller.options, policy, prune)


def plan_stack(
    files: Sequence[str | Path],
    stack: str,
    *,
    engine: StackEngine | None = None,
    environment: Mapping[str, str] | None = None,
    update_config: UpdateConfig | None = None,
    rollback_config: RollbackConfig | None = None,
    resolve_image: ResolveImage | str = ResolveImage.NEVER,
    prune: bool = False,
) -> StackPlan:
    """What ``deploy_stack`` would do, changing nothing (with ``resolve_image``,
    the registry is asked for the digests)."""
    deploy = _setup(
        files,
        stack,
        engine,
        None,
        (),
        None,
        environment,
        update_config,
        rollback_config,
        resolve_image,
        prune,
    )
    return deploy.plan(dry_run=True)


def deploy_stack(
    files: Sequence[str | Path],
    stack: str,
    *,
    engine: StackEngine | None = None,
    controller: Controller | None = None,
    hooks: Sequence[Hook] = (),
    options: RolloutOptions | None = None,
    environment: Mapping[str, str] | None = None,
    update_config: UpdateConfig | None = None,
    rollback_config: RollbackConfig | None = None,
    resolve_image: ResolveImage | str = ResolveImage.NEVER,
    prune: bool = False,
) -> StackResult:
    """Deploy the compose ``files`` as ``stack``, wave by wave, to one verdict.

    Input errors (``InputError``: a missing file, YAML, an unsupported key,
    an undefined variable) are raised before anything changes. ``controller``
    (with its clock and hooks) rolls each service; by default one over
    ``engine`` (a ``DockerEngine`` from the environment). ``update_config``
    and ``rollback_config`` apply to services whose compose entry has none.
    ``resolve_image`` pins images to their registry digest as
    ``docker stack deploy --resolve-image`` does (default ``never``: the
    images as the compose files name them). ``prune`` removes the stack's
    services the files no longer name, once every change landed.
    """
    deploy = _setup(
        files,
        stack,
        engine,
        controller,
        hooks,
        options,
        environment,
        update_config,
        rollback_config,
        resolve_image,
        prune,
    )
    plan = deploy.plan()
    started = time.monotonic()
    result = deploy.run(plan)
    log.info(
        "stack_finished",
        stack=stack,
        outcome=result.outcome.value,
        seconds=round(time.monotonic() - started, 1),
    )
    return result
