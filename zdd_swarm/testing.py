"""Test helpers for users' own deploy scripts (structlog's ``testing`` idea).

``FakeClock`` is simulated time; ``FakeEngine`` is an in-memory
swarm manager that implements ``Engine`` and runs
Swarm's updater semantics in that time: ``parallelism`` workers, each taking
the next slot, waiting for its new task to leave STARTING, then pausing
``delay``; start-first or stop-first; the failure action with
``MaxFailureRatio``; the monitor period; the engine's own rollback; restarts
of failed tasks. How a task of an image behaves is scripted with
``ImageBehaviour``::

    clock = FakeClock()
    engine = FakeEngine(clock)
    engine.add_service("web", "app:1", replicas=4)
    engine.behave("app:bad", ImageBehaviour(fail_after=1.0))
    result = Controller(engine, clock=clock).update("web", ServiceChange(image="app:bad"))
    assert result.outcome is Outcome.ROLLED_BACK
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from .config import RollbackConfig, UpdateConfig
from .engine import EngineInfo, NodeView, SwarmObject
from .errors import EngineAPIError, EngineUnavailable, ServiceNotFound, VersionConflict
from .model import (
    Platform,
    ResolvedImage,
    ServiceView,
    TaskView,
    canonical,
    image_of,
    placement_free_key,
    replicas_of,
    task_template_key,
)

__all__ = ["FakeClock", "FakeEngine", "ImageBehaviour"]

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_RESTART_DELAY = 5.0


class FakeClock:
    """Simulated time: ``sleep`` returns at once and moves time forward (for
    every thread: a stack rolls the services of one wave from threads)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self.slept = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self.t += seconds
                self.slept += seconds

    def now(self) -> datetime:
        return _EPOCH + timedelta(seconds=self.t)


@dataclass(frozen=True)
class ImageBehaviour:
    """How tasks of one image behave in a ``FakeEngine``.

    A task is RUNNING ``start`` seconds after it is created (STARTING until
    then, as with a healthcheck). ``fail_after`` makes it fail that many
    seconds after creation (before or after it is RUNNING); ``never_ready``
    keeps it STARTING (a healthcheck that never passes); ``pending`` keeps it
    PENDING (no node fits); ``reject`` makes it REJECTED at once (image pull
    failed).
    """

    start: float = 2.0
    fail_after: float | None = None
    never_ready: bool = False
    pending: bool = False
    reject: bool = False
    error: str = "task: non-zero exit (1)"


@dataclass
class _Task:
    id: str
    slot: int
    node: str
    spec: dict[str, Any]
    created: float
    state: str
    desired: str = "running"
    running_at: float | None = None
    error: str = ""
    exit_code: int | None = None
    restarted: bool = False
    #: when the state last changed (the engine's Status.Timestamp); None: created
    changed_at: float | None = None
    #: the service's endpoint spec when the task was created (``Endpoint.Spec``)
    endpoint: str = ""


@dataclass
class _Updater:
    spec: dict[str, Any]
    config: UpdateConfig | RollbackConfig
    rollback: bool
    queue: list[int]
    total: int
    #: per worker: the task it waits for, and when it is free again
    workers: list[tuple[str | None, float]] = field(default_factory=list)
    created: dict[str, float] = field(default_factory=dict)
    failures: set[str] = field(default_factory=set)
    done_at: float | None = None


@dataclass
class _Service:
    id: str
    version: int
    spec: dict[str, Any]
    previous: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    updater: _Updater | None = None


_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(method: _F) -> _F:
    @functools.wraps(method)
    def call(self: FakeEngine, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return call  # type: ignore[return-value]


def _serialised(cls: type[FakeEngine]) -> type[FakeEngine]:
    """Every public method under the engine's lock, one call at a time, as
    requests to a real manager are: a stack rolls the services of one wave
    from threads."""
    for name, member in list(vars(cls).items()):
        if callable(member) and not name.startswith("_"):
            setattr(cls, name, _locked(member))
    return cls


@_serialised
class FakeEngine:
    """An in-memory swarm manager in simulated time (see module docstring)."""

    def __init__(self, clock: FakeClock, nodes: int = 3) -> None:
        self._lock = threading.RLock()
        self.clock = clock
        self.nodes = [f"node-{i}" for i in range(1, nodes + 1)]
        self.services: dict[str, _Service] = {}
        self.tasks: dict[str, list[_Task]] = {}
        self.behaviours: dict[str, ImageBehaviour] = {}
        self.ids = (f"{n:025x}" for n in itertools.count(1))
        self.requests = 0
        #: every update request: (service id, "update" | "rollback", image)
        self.updates: list[tuple[str, str, str]] = []
        #: while clock < this, every call raises EngineUnavailable
        self.down_until = -1.0
        self.manager = True
        #: nodes the manager reports down: their tasks that do not run yet stay
        #: ASSIGNED, and Swarm's updater waits for them (it has no timeout)
        self.down_nodes: set[str] = set()
        #: networks, secrets and configs by kind, then id: (name, labels, data)
        self.objects: dict[str, dict[str, tuple[str, dict[str, str], bytes]]] = {
            "network": {},
            "secret": {},
            "config": {},
        }

    # -- scripting -------------------------------------------------------------

    def behave(self, image: str, behaviour: ImageBehaviour) -> None:
        self.behaviours[image] = behaviour

    def add_service(
        self,
        name: str,
        image: str,
        replicas: int = 3,
        update_config: UpdateConfig | None = None,
        rollback_config: RollbackConfig | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        spec: dict[str, Any] = {
            "Name": name,
            "Labels": {"team": "web"},
            "TaskTemplate": {"ContainerSpec": {"Image": image, "Env": ["A=1"]}, "ForceUpdate": 0},
            "Mode": {"Replicated": {"Replicas": replicas}},
            "UpdateConfig": (update_config or UpdateConfig()).to_api(),
            "RollbackConfig": (rollback_config or RollbackConfig()).to_api(),
            "EndpointSpec": {"Mode": "dnsrr"},
        }
        spec.update(copy.deepcopy(dict(extra or {})))
        service = _Service(next(self.ids), 10, spec)
        self.services[service.id] = service
        self.tasks[service.id] = []
        for slot in range(1, replicas + 1):
            task = self._new_task(service, slot, spec)
            task.state, task.running_at = "running", self.clock.t
            task.changed_at = self.clock.t
        return service.id

    def change_spec(self, name: str, mutate: Any) -> None:
        """Another client changes the service (no update of tasks simulated)."""
        service = self._find(name)
        mutate(service.spec)
        service.version += 1

    # -- Engine ---------------------------------------------------------------------

    def _api(self) -> None:
        self.requests += 1
        if self.clock.t < self.down_until:
            raise EngineUnavailable("cannot reach the Docker engine: connection refused")

    def info(self) -> EngineInfo:
        self._api()
        return EngineInfo("fake", "1.41", self.manager, "node-1")

    def inspect_service(self, service: str) -> ServiceView:
        self._api()
        found = self._find(service)
        self._advance(found)
        return ServiceView.from_api(
            {
                "ID": found.id,
                "Version": {"Index": found.version},
                "Spec": copy.deepcopy(found.spec),
                "PreviousSpec": copy.deepcopy(found.previous),
                "UpdateStatus": copy.deepcopy(found.status),
            }
        )

    def list_tasks(self, service_id: str) -> list[TaskView]:
        self._api()
        service = self._find(service_id)
        self._advance(service)
        return [TaskView.from_api(self._task_json(service, t)) for t in self.tasks[service.id]]

    def list_nodes(self) -> list[NodeView]:
        self._api()
        return [
            NodeView(
                n,
                n,
                "down" if n in self.down_nodes else "ready",
                "active",
                "worker",
                address=f"10.0.0.{i}",
            )
            for i, n in enumerate(self.nodes, start=1)
        ]

    def update_service(
        self, service: ServiceView, spec: Mapping[str, Any], *, rollback: bool = False
    ) -> list[str]:
        self._api()
        current = self._find(service.id)
        self._advance(current)
        if service.version != current.version:
            raise VersionConflict("rpc error: code = Unknown desc = update out of sequence")
        if rollback:
            if current.previous is None:
                raise EngineAPIError("service does not have a previous spec", 500)
            new_spec, current.previous = current.previous, current.spec
            self.updates.append((current.id, "rollback", image_of(new_spec)))
            self._start(current, new_spec, rollback=True, message="manually requested rollback")
        else:
            self.updates.append((current.id, "update", image_of(spec)))
            current.previous = current.spec
            self._start(
                current, copy.deepcopy(dict(spec)), rollback=False, message="update in progress"
            )
        return []

    # -- StackEngine ---------------------------------------------------------------

    def list_services(self, labels: Mapping[str, str]) -> list[ServiceView]:
        self._api()
        found = []
        for service in list(self.services.values()):
            have = service.spec.get("Labels") or {}
            if all(have.get(k) == v for k, v in labels.items()):
                found.append(service.id)
        return [self.inspect_service(i) for i in found]

    def create_service(self, spec: Mapping[str, Any]) -> str:
        """controlapi ``CreateService``: the orchestrator creates the tasks,
        which start as their image's behaviour says."""
        self._api()
        name = str(spec.get("Name", ""))
        if any(s.spec["Name"] == name for s in self.services.values()):
            raise EngineAPIError(
                f"rpc error: code = AlreadyExists desc = name conflicts: {name}", 409
            )
        service = _Service(next(self.ids), 10, copy.deepcopy(dict(spec)))
        self.services[service.id] = service
        self.tasks[service.id] = []
        self._scale(service, service.spec)
        return service.id

    def remove_service(self, service: str) -> None:
        self._api()
        found = self._find(service)
        del self.services[found.id]
        del self.tasks[found.id]

    def list_objects(self, kind: str, labels: Mapping[str, str]) -> list[SwarmObject]:
        self._api()
        return [
            SwarmObject(object_id, name, dict(have))
            for object_id, (name, have, _) in self.objects[kind].items()
            if all(have.get(k) == v for k, v in labels.items())
        ]

    def create_object(self, kind: str, spec: Mapping[str, Any]) -> str:
        self._api()
        name = str(spec["Name"])
        if any(n == name for n, _, _ in self.objects[kind].values()):
            raise EngineAPIError(
                f"rpc error: code = AlreadyExists desc = {kind} {name} exists", 409
            )
        object_id = next(self.ids)
        data = bytes(spec.get("Data") or b"")
        self.objects[kind][object_id] = (name, dict(spec.get("Labels") or {}), data)
        return object_id

    def remove_object(self, kind: str, object_id: str) -> None:
        self._api()
        if object_id not in self.objects[kind]:
            raise EngineAPIError(f"{kind} {object_id} not found", 404)
        name = self.objects[kind][object_id][0]
        for service in self.services.values():
            if name in _uses(service.spec):
                raise EngineAPIError(f"{kind} {name} is in use by service {service.id}", 400)
        del self.objects[kind][object_id]

    def relabel_config(self, config_id: str, labels: Mapping[str, str]) -> None:
        self._api()
        if config_id not in self.objects["config"]:
            raise EngineAPIError(f"config {config_id} not found", 404)
        name, _, data = self.objects["config"][config_id]
        self.objects["config"][config_id] = (name, dict(labels), data)

    def resolve_image(self, image: str) -> ResolvedImage:
        self._api()
        digest = "sha256:" + f"{abs(hash(image)):x}".rjust(64, "0")[:64]
        return ResolvedImage(digest, (Platform(os="linux", architecture="amd64"),))

    def image_healthcheck(self, image: str) -> Mapping[str, Any] | bool | None:
        return {"Test": ["CMD", "true"], "Interval": 1_000_000_000, "Retries": 2}

    # -- simulation ----------------------------------------------------------------

    def _find(self, name: str) -> _Service:
        for service in self.services.values():
            if name in (service.id, service.spec["Name"]):
                return service
        raise ServiceNotFound(name)

    def _new_task(self, service: _Service, slot: int, spec: Mapping[str, Any]) -> _Task:
        # by slot, round the nodes; the scheduler places nothing on a down node
        up = [n for n in self.nodes if n not in self.down_nodes] or self.nodes
        task = _Task(
            next(self.ids),
            slot,
            up[(slot - 1) % len(up)],
            copy.deepcopy(dict(spec["TaskTemplate"])),
            self.clock.t,
            "starting",
            endpoint=canonical(spec.get("EndpointSpec") or {}),
        )
        self.tasks[service.id].append(task)
        return task

    def _behaviour(self, task: _Task) -> ImageBehaviour:
        return self.behaviours.get(str(task.spec["ContainerSpec"]["Image"]), ImageBehaviour())

    def _dirty(self, task: _Task, spec: Mapping[str, Any]) -> bool:
        """swarmkit ``orchestrator/task.go``, IsTaskDirty: the task template or
        the endpoint spec differ, placement alone does not count (every fake
        node satisfies every constraint)."""
        template = spec["TaskTemplate"]
        if task.endpoint != canonical(spec.get("EndpointSpec") or {}):
            return True
        if task_template_key(task.spec) == task_template_key(template):
            return False
        return placement_free_key(task.spec) != placement_free_key(template)

    def _start(
        self, service: _Service, spec: dict[str, Any], *, rollback: bool, message: str
    ) -> None:
        """controlapi ``UpdateService``, then the orchestrator and its updater.

        An update resets "service.UpdateStatus = nil"; a requested rollback
        writes ROLLBACK_STARTED "manually requested rollback". The updater
        then "Abort[s] immediately if all tasks are clean" (completing a
        status in progress), and only "If there's no update in progress"
        starts one (swarmkit ``updater.go``). New slots of a scale-up are
        created by the orchestrator, not the updater; a scale-down removes
        the highest slots.
        """
        service.spec = spec
        service.version += 1
        config: UpdateConfig | RollbackConfig
        if rollback:
            config = RollbackConfig.from_api(spec.get("RollbackConfig"))
            service.status = {
                "State": "rollback_started",
                "Message": message,
                "StartedAt": self.clock.now().isoformat(),
            }
        else:
            config = UpdateConfig.from_api(spec.get("UpdateConfig"))
            service.status = None
        self._scale(service, spec)
        slots = sorted(
            {
                t.slot
                for t in self.tasks[service.id]
                if t.desired == "running" and self._dirty(t, spec)
            }
        )
        service.updater = None
        if not slots:
            if service.status is not None:
                self._complete(service, rollback)
            return
        if service.status is None:
            service.status = {
                "State": "updating",
                "Message": message,
                "StartedAt": self.clock.now().isoformat(),
            }
        parallelism = config.parallelism or max(len(slots), 1)
        service.updater = _Updater(
            spec, config, rollback, slots, len(slots), workers=[(None, self.clock.t)] * parallelism
        )
        self._advance(service)

    def _scale(self, service: _Service, spec: Mapping[str, Any]) -> None:
        replicas = replicas_of(spec)
        if replicas is None:
            return
        tasks = self.tasks[service.id]
        live = {t.slot for t in tasks if t.desired == "running"}
        for slot in range(1, replicas + 1):
            if slot not in live:
                self._new_task(service, slot, spec)
        for task in tasks:
            if task.slot > replicas and task.desired == "running":
                task.desired, task.state, task.changed_at = "shutdown", "shutdown", self.clock.t

    def _complete(self, service: _Service, rollback: bool) -> None:
        assert service.status is not None
        service.status["State"] = "rollback_completed" if rollback else "completed"
        service.status["Message"] = "rollback completed" if rollback else "update completed"
        service.status["CompletedAt"] = self.clock.now().isoformat()
        service.updater = None

    def _advance(self, service: _Service) -> None:
        now = self.clock.t
        for _ in range(1000):
            if not self._tick(service, now):
                return

    def _tick(self, service: _Service, now: float) -> bool:
        changed = False
        tasks = self.tasks[service.id]
        for task in list(tasks):
            if task.desired != "running" or task.state in ("failed", "rejected", "shutdown"):
                continue
            if task.node in self.down_nodes and task.state != "running":
                if task.state != "assigned":
                    task.state, task.changed_at, changed = "assigned", now, True
                continue
            b = self._behaviour(task)
            age = now - task.created
            if b.reject and task.state != "rejected":
                task.state, task.error = (
                    "rejected",
                    "No such image: " + str(task.spec["ContainerSpec"]["Image"]),
                )
                task.changed_at = now
                changed = True
            elif b.fail_after is not None and age >= b.fail_after:
                task.state, task.error, task.exit_code = "failed", b.error, 1
                task.changed_at = task.created + b.fail_after
                changed = True
            elif b.pending:
                if task.state != "pending":
                    task.state, task.changed_at = "pending", now
                    task.error = "no suitable node (scheduling constraints not satisfied)"
                    changed = True
            elif task.state == "starting" and not b.never_ready and age >= b.start:
                task.state, task.running_at = "running", task.created + b.start
                task.changed_at = task.running_at
                changed = True
            if task.state in ("failed", "rejected"):
                self._on_failure(service, task, now)
        # restart failed tasks of the current spec (restart policy, 5 s delay)
        for task in list(tasks):
            due = task.created + _RESTART_DELAY + (self._behaviour(task).fail_after or 0)
            if (
                task.state in ("failed", "rejected")
                and not task.restarted
                and not self._dirty(task, service.spec)
                and task.desired == "running"
                and now >= due
            ):
                task.restarted, task.desired = True, "shutdown"
                self._new_task(service, task.slot, service.spec)
                changed = True
        # start-first: retire the old task of a slot once its new task runs
        for task in tasks:
            if (
                task.desired == "running"
                and self._dirty(task, service.spec)
                and any(
                    t.slot == task.slot
                    and t.state == "running"
                    and t.desired == "running"
                    and not self._dirty(t, service.spec)
                    for t in tasks
                )
            ):
                task.desired, task.state, task.changed_at = "shutdown", "shutdown", now
                changed = True
        updater = service.updater
        if updater is None or service.status is None:
            return changed
        if service.status["State"] not in ("updating", "rollback_started"):
            return changed
        for i, (waiting, free_at) in enumerate(updater.workers):
            if waiting is not None:
                new = next(t for t in tasks if t.id == waiting)
                if new.state in ("running", "failed", "rejected", "shutdown"):
                    updater.workers[i] = (None, now + updater.config.delay.total_seconds())
                    changed = True
            elif free_at <= now and updater.queue:
                slot = updater.queue.pop(0)
                order = updater.config.order.value
                if order == "stop-first":
                    for old in tasks:
                        if old.slot == slot and old.desired == "running":
                            old.desired, old.state, old.changed_at = "shutdown", "shutdown", now
                created = self._new_task(service, slot, service.spec)
                updater.created[created.id] = now
                updater.workers[i] = (created.id, now)
                changed = True
        idle = all(waiting is None and free_at <= now for waiting, free_at in updater.workers)
        if idle and not updater.queue and updater.done_at is None:
            monitor = updater.config.monitor.total_seconds()
            if updater.config.delay.total_seconds() >= monitor:
                monitor = updater.config.delay.total_seconds() + 1
            updater.done_at = now + monitor
            changed = True
        if updater.done_at is not None and now >= updater.done_at:
            self._complete(service, updater.rollback)
            service.version += 1  # the engine writes its status like any change
            changed = True
        return changed

    def _on_failure(self, service: _Service, task: _Task, now: float) -> None:
        updater = service.updater
        if updater is None or task.id not in updater.created or task.id in updater.failures:
            return
        if service.status is None or service.status["State"] not in (
            "updating",
            "rollback_started",
        ):
            return
        monitor = updater.config.monitor.total_seconds()
        if task.running_at is not None and now - task.running_at > monitor:
            return
        updater.failures.add(task.id)
        if len(updater.failures) / max(updater.total, 1) <= updater.config.max_failure_ratio:
            return
        action = updater.config.failure_action.value
        if action == "pause" or (action == "rollback" and updater.rollback):
            service.status["State"] = "rollback_paused" if updater.rollback else "paused"
            service.status["Message"] = (
                f"{'rollback' if updater.rollback else 'update'} paused "
                f"due to failure or early termination of task {task.id}"
            )
            service.updater = None
            service.version += 1
        elif action == "rollback" and service.previous is not None:
            new_spec, service.previous = service.previous, None
            self._start(
                service,
                new_spec,
                rollback=True,
                message=f"update rolled back due to failure or early termination of task {task.id}",
            )

    def _task_json(self, service: _Service, task: _Task) -> dict[str, Any]:
        created = _EPOCH + timedelta(seconds=task.created)
        return {
            "ID": task.id,
            "ServiceID": service.id,
            "Slot": task.slot,
            "NodeID": task.node,
            "CreatedAt": created.isoformat(),
            "Spec": copy.deepcopy(task.spec),
            "DesiredState": task.desired,
            "Status": {
                "State": task.state,
                "Err": task.error,
                "Message": task.state,
                "Timestamp": (
                    _EPOCH
                    + timedelta(
                        seconds=task.created if task.changed_at is None else task.changed_at
                    )
                ).isoformat(),
                "ContainerStatus": {"ExitCode": task.exit_code},
                # a running task's host-mode ports, as the engine reports them
                "PortStatus": {"Ports": self._host_ports(task)},
            },
        }

    @staticmethod
    def _host_ports(task: _Task) -> list[dict[str, Any]]:
        if task.state != "running" or not task.endpoint:
            return []
        ports = json.loads(task.endpoint).get("Ports") or []
        return [p for p in ports if p.get("PublishMode") == "host"]


def _uses(spec: Mapping[str, Any]) -> set[str]:
    """Names and ids of the networks, secrets and configs a service spec uses."""
    template = spec.get("TaskTemplate") or {}
    container = template.get("ContainerSpec") or {}
    used = {str(n.get("Target", "")) for n in template.get("Networks") or []}
    for ref in list(container.get("Secrets") or []) + list(container.get("Configs") or []):
        used.update(
            {
                str(ref.get("SecretName") or ref.get("ConfigName") or ""),
                str(ref.get("SecretID") or ref.get("ConfigID") or ""),
            }
        )
    return used
