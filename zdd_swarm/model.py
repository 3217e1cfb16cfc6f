"""Read-only views of what the engine reports: services, tasks, update status,
an image's digest and platforms.

Pure: built from Engine API JSON (``docker service inspect`` / task list), no
I/O. The controller only ever reasons about these views.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "Platform",
    "ResolvedImage",
    "ServiceMode",
    "ServiceView",
    "TaskState",
    "TaskView",
    "UpdateState",
    "UpdateStatus",
    "parse_timestamp",
]


class TaskState(enum.StrEnum):
    """Swarm task states, in the order a task goes through them."""

    NEW = "new"
    ALLOCATED = "allocated"
    PENDING = "pending"
    ASSIGNED = "assigned"
    ACCEPTED = "accepted"
    PREPARING = "preparing"
    READY = "ready"
    STARTING = "starting"
    RUNNING = "running"
    COMPLETE = "complete"
    SHUTDOWN = "shutdown"
    FAILED = "failed"
    REJECTED = "rejected"
    REMOVE = "remove"
    ORPHANED = "orphaned"

    @property
    def rank(self) -> int:
        return _TASK_ORDER.index(self)

    @property
    def terminal(self) -> bool:
        """Past RUNNING: the task will never run (again)."""
        return self.rank > TaskState.RUNNING.rank

    @classmethod
    def parse(cls, value: str) -> TaskState:
        try:
            return cls(value.lower())
        except ValueError:
            return cls.ORPHANED


_TASK_ORDER = list(TaskState)

#: States that mean a task ended badly. COMPLETE counts too: a service task
#: that exits 0 stopped serving (Swarm counts it the same way).
FAILED_STATES = frozenset(
    {TaskState.FAILED, TaskState.REJECTED, TaskState.COMPLETE, TaskState.ORPHANED}
)


class ServiceMode(enum.StrEnum):
    """The service's ``Spec.Mode``: which of Swarm's four modes it runs in."""

    REPLICATED = "replicated"
    GLOBAL = "global"
    REPLICATED_JOB = "replicated-job"
    GLOBAL_JOB = "global-job"

    @property
    def job(self) -> bool:
        """A job: its tasks run to completion, and an update re-runs them."""
        return self in (ServiceMode.REPLICATED_JOB, ServiceMode.GLOBAL_JOB)


#: ``Spec.Mode`` keys, by mode.
_MODE_KEYS = {
    "Replicated": ServiceMode.REPLICATED,
    "Global": ServiceMode.GLOBAL,
    "ReplicatedJob": ServiceMode.REPLICATED_JOB,
    "GlobalJob": ServiceMode.GLOBAL_JOB,
}


class UpdateState(enum.StrEnum):
    """The engine's ``UpdateStatus.State``."""

    UPDATING = "updating"
    PAUSED = "paused"
    COMPLETED = "completed"
    ROLLBACK_STARTED = "rollback_started"
    ROLLBACK_PAUSED = "rollback_paused"
    ROLLBACK_COMPLETED = "rollback_completed"

    @property
    def rollback(self) -> bool:
        """A rollback started, paused or completed."""
        return self.value.startswith("rollback_")


@dataclass(frozen=True)
class UpdateStatus:
    state: UpdateState
    message: str = ""
    started_at: datetime | None = None
    completed_at: datetime | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any] | None) -> UpdateStatus | None:
        if not data or not data.get("State"):
            return None
        return cls(
            state=UpdateState(data["State"]),
            message=str(data.get("Message", "")),
            started_at=parse_timestamp(data.get("StartedAt")),
            completed_at=parse_timestamp(data.get("CompletedAt")),
        )


_TIMESTAMP = re.compile(
    r"(?P<base>\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d)"
    r"(?:\.(?P<fraction>\d+))?"
    r"(?P<zone>[Zz]|[+-]\d\d:?\d\d)?"
)


def parse_timestamp(value: object) -> datetime | None:
    """Parse an engine timestamp: RFC 3339 (Go's ``RFC3339Nano``) with up to
    nanoseconds, in UTC (``Z``) or with an offset (``+01:00``); a naive one
    is taken as UTC. The zero time (``0001-01-01...``) is None."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        return datetime.fromisoformat(value)  # raises ValueError naming the text
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")  # Python keeps microseconds
    zone = match["zone"] or ""
    if zone in ("Z", "z"):
        zone = "+00:00"
    elif len(zone) == 5:
        zone = f"{zone[:3]}:{zone[3:]}"
    parsed = datetime.fromisoformat(f"{match['base'].upper()}.{fraction}{zone}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Platform:
    """A platform tasks may run on: one entry of ``TaskTemplate.Placement.Platforms``.

    Swarm matches only OS and architecture; an empty field matches any.
    """

    os: str
    architecture: str = ""

    def to_api(self) -> dict[str, str]:
        """The Engine API form (``swarm.Platform``, empty fields omitted)."""
        api = {"Architecture": self.architecture, "OS": self.os}
        return {k: v for k, v in api.items() if v}


@dataclass(frozen=True)
class ResolvedImage:
    """An image as its registry knows it (``GET /distribution/{name}/json``):
    the digest of its manifest (list) and the platforms it is built for."""

    digest: str
    platforms: tuple[Platform, ...] = ()

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ResolvedImage:
        """From the engine's distribution inspect (OCI descriptor and platforms).

        The platforms are those ``docker service update --image`` sends, after
        moby's ``client/service_create.go`` (``imageDigestAndPlatforms``,
        vendored in docker/cli)::

            // skip attestations and other data included in the manifest index.
            if p.OS == "unknown" || p.Architecture == "unknown" {
            // clear architecture field for arm. [...] moby/swarmkit#2294
            if strings.EqualFold(arch, "arm") { arch = "" }
            platform := swarm.Platform{Architecture: arch, OS: p.OS}
            // Skip duplicates. Swarm currently only uses os/arch [...]
        """
        digest = str(data["Descriptor"]["digest"])
        if not digest:
            raise ValueError("no digest")
        platforms: list[Platform] = []
        for entry in data.get("Platforms") or []:
            os_name = str(entry.get("os") or "")
            arch = str(entry.get("architecture") or "")
            if os_name == "unknown" or arch == "unknown":
                continue
            platform = Platform(os=os_name, architecture="" if arch.lower() == "arm" else arch)
            if platform not in platforms:
                platforms.append(platform)
        return cls(digest=digest, platforms=tuple(platforms))

    def pin(self, image: str) -> str:
        """``image`` with this digest: ``name:tag@sha256:...``, the tag
        ``latest`` if it names none (moby's ``imageWithTagString`` then
        ``imageWithDigestString``); an image that has a digest is kept."""
        if "@" in image:
            return image
        if ":" not in image.rpartition("/")[2]:
            image = f"{image}:latest"
        return f"{image}@{self.digest}"


def canonical(value: Any) -> str:
    """A stable text form of a JSON value, to compare specs."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _pruned(value: Any) -> Any:
    if isinstance(value, Mapping):
        pruned = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def spec_key(spec: Mapping[str, Any]) -> str:
    """Compare service specs (``Spec``, ``PreviousSpec``) the same way."""
    normalised = _pruned(dict(spec))
    template = normalised.get("TaskTemplate")
    if isinstance(template, dict):
        template.pop("Runtime", None)
    return canonical(normalised)


def task_template_key(template: Mapping[str, Any]) -> str:
    """Compare a task's ``Spec`` with a service's ``TaskTemplate``.

    A task carries a copy of the template it was created from, but the
    engine's conversion differs slightly between the two (engine 20.10 adds
    ``Runtime: container`` to the service's template only, and omits empty
    values differently), so both sides are normalised first.
    """
    normalised = _pruned(dict(template))
    normalised.pop("Runtime", None)
    return canonical(normalised)


def placement_free_key(template: Mapping[str, Any]) -> str:
    """``task_template_key`` of a template without its placement."""
    return task_template_key({k: v for k, v in template.items() if k != "Placement"})


@dataclass(frozen=True)
class TaskView:
    """One task as the engine reports it."""

    id: str
    service_id: str
    slot: int | None
    node_id: str
    state: TaskState
    desired_state: TaskState
    created_at: datetime | None
    status_at: datetime | None
    message: str
    error: str
    exit_code: int | None
    image: str
    spec_key: str
    addresses: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: ``spec_key`` of the task's spec without its placement
    placement_free_key: str = ""
    #: (target port, published port) of each port the task publishes in host
    #: mode, on its node's address (``Status.PortStatus``)
    host_ports: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> TaskView:
        status = data.get("Status") or {}
        container = status.get("ContainerStatus") or {}
        spec = data.get("Spec") or {}
        exit_code = container.get("ExitCode")
        addresses: list[str] = []
        for attachment in data.get("NetworksAttachments") or []:
            addresses.extend(a.split("/")[0] for a in attachment.get("Addresses") or [])
        return cls(
            id=str(data["ID"]),
            service_id=str(data.get("ServiceID", "")),
            slot=data.get("Slot"),
            node_id=str(data.get("NodeID", "")),
            state=TaskState.parse(str(status.get("State", "new"))),
            desired_state=TaskState.parse(str(data.get("DesiredState", "running"))),
            created_at=parse_timestamp(data.get("CreatedAt")),
            status_at=parse_timestamp(status.get("Timestamp")),
            message=str(status.get("Message", "")),
            error=str(status.get("Err", "")),
            exit_code=int(exit_code) if exit_code is not None else None,
            image=str((spec.get("ContainerSpec") or {}).get("Image", "")),
            spec_key=task_template_key(spec),
            addresses=tuple(addresses),
            raw=data,
            placement_free_key=placement_free_key(spec),
            host_ports=host_ports((status.get("PortStatus") or {}).get("Ports")),
        )

    @property
    def failed(self) -> bool:
        return self.state in FAILED_STATES

    @property
    def running(self) -> bool:
        return self.state is TaskState.RUNNING


@dataclass(frozen=True)
class ServiceView:
    """One service as the engine reports it."""

    id: str
    name: str
    version: int
    spec: Mapping[str, Any]
    previous_spec: Mapping[str, Any] | None
    update_status: UpdateStatus | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ServiceView:
        spec = data.get("Spec") or {}
        return cls(
            id=str(data["ID"]),
            name=str(spec.get("Name", "")),
            version=int((data.get("Version") or {}).get("Index", 0)),
            spec=spec,
            previous_spec=data.get("PreviousSpec"),
            update_status=UpdateStatus.from_api(data.get("UpdateStatus")),
            raw=data,
        )

    @property
    def image(self) -> str:
        return image_of(self.spec)

    @property
    def previous_image(self) -> str | None:
        return image_of(self.previous_spec) if self.previous_spec else None

    @property
    def task_key(self) -> str:
        """Canonical form of the task template: equal to a task's ``spec_key``
        exactly when that task was created from the current spec."""
        return task_template_key(self.spec.get("TaskTemplate") or {})

    @property
    def mode(self) -> ServiceMode:
        return service_mode(self.spec)

    @property
    def replicas(self) -> int | None:
        """Replica count of a replicated service, None for global services."""
        return replicas_of(self.spec)

    @property
    def endpoint_key(self) -> str:
        """Canonical form of the endpoint spec (ports, endpoint mode): a change
        of it replaces every task, though the task template is unchanged."""
        return canonical(_pruned(dict(self.spec.get("EndpointSpec") or {})))

    @property
    def state(self) -> UpdateState | None:
        return self.update_status.state if self.update_status else None

    @property
    def host_ports(self) -> tuple[tuple[int, int], ...]:
        """(target port, published port) of each port the spec publishes in
        host mode (published port 0: one the engine picks on each node)."""
        return host_ports((self.spec.get("EndpointSpec") or {}).get("Ports"))


def host_ports(ports: Any) -> tuple[tuple[int, int], ...]:
    """(target, published) of the host-mode TCP ports of an engine port list
    (``EndpointSpec.Ports`` or a task's ``PortStatus.Ports``), once each."""
    found: dict[tuple[int, int], None] = {}
    for port in ports or []:
        if port.get("PublishMode") == "host" and port.get("Protocol", "tcp") == "tcp":
            found[int(port.get("TargetPort", 0)), int(port.get("PublishedPort") or 0)] = None
    return tuple(found)


def service_mode(spec: Mapping[str, Any]) -> ServiceMode:
    """The mode of a service spec (replicated when the spec names none, as
    the engine defaults it)."""
    mode = spec.get("Mode") or {}
    return next((m for key, m in _MODE_KEYS.items() if key in mode), ServiceMode.REPLICATED)


def replicas_of(spec: Mapping[str, Any]) -> int | None:
    """Replica count of a replicated service spec, None for other modes."""
    mode = spec.get("Mode") or {}
    if "Replicated" not in mode and mode:
        return None
    return int((mode.get("Replicated") or {}).get("Replicas", 1))


def image_of(spec: Mapping[str, Any]) -> str:
    template = spec.get("TaskTemplate") or {}
    return str((template.get("ContainerSpec") or {}).get("Image", ""))
