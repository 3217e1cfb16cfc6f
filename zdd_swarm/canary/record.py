"""A canary's state, kept with the service so that it outlives the process.

While a canary holds a service, its state lives in a Swarm config named
``SERVICE_zdd-swarm-canary``: the step under way, the phase, the analysis
results so far, the original spec to restore on abort, and the lock (the
owner's id and its last heartbeat). The state is JSON in the config's
``com.zdd-swarm.canary.state`` label (a config's data cannot change, so the
record is replaced whole, as ``zdd_swarm/stack/deploy.py`` keeps a stack
deploy's).

Not as labels of the service itself: a label change is a new service spec,
and a new spec starts a new updater that releases the next held tasks
(see ``zdd_swarm/canary/driver.py``).

The lock is the record's object id. Only the owner rewrites the record,
and every rewrite removes the id it last wrote before creating the next:
if that id is gone, another controller took the rollout over
(``LockLost``). A controller may take a record over when its heartbeat is
older than ``stale_after``, by removing the stale id: of two that try, the
second finds it gone. Other processes never rewrite the record: promote
and abort are requests, configs of their own
(``SERVICE_zdd-swarm-canary-promote``, ``-abort``) that the owner consumes.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._logging import get_logger
from ..engine import StackEngine
from ..errors import EngineAPIError, UpdateInProgress

__all__ = [
    "RECORD_LABEL",
    "CanaryPhase",
    "CanaryRecord",
    "CanaryStore",
    "LockLost",
    "Request",
]

log = get_logger()

SERVICE_LABEL = "com.zdd-swarm.canary"
RECORD_LABEL = "com.zdd-swarm.canary.state"
REQUEST_LABEL = "com.zdd-swarm.canary.request"


class CanaryPhase(enum.StrEnum):
    """What the canary is doing at its step."""

    RUNNING = "running"
    """Releasing tasks or waiting for them, or a timed pause."""
    PAUSED = "paused"
    """Waiting for a person: ``promote`` goes on, ``abort`` restores."""
    ANALYSING = "analysing"
    ABORTING = "aborting"
    """Restoring the original spec."""


class Request(enum.StrEnum):
    """What another process asks of the canary's owner."""

    PROMOTE = "promote"
    ABORT = "abort"


class LockLost(UpdateInProgress):
    """Another controller drives the canary, or took it over (the lock went
    stale)."""


@dataclass(frozen=True)
class CanaryRecord:
    """A canary in flight, as written to its config."""

    service: str
    step: int
    """The index of the step under way."""
    steps: tuple[str, ...]
    """Every step, in its CLI form (``parse_step`` reads it back)."""
    phase: CanaryPhase
    replicas: int
    released: int
    """Tasks sent to the new release so far."""
    original: Mapping[str, Any]
    """The spec to restore on abort."""
    target: Mapping[str, Any]
    old_image: str
    new_image: str
    owner: str
    heartbeat: float
    """The owner's last sign of life, in seconds since the epoch."""
    reason: str = ""
    """Why the canary waits for a person, when it does."""
    analyses: tuple[Mapping[str, Any], ...] = ()
    """Each analysis run so far: its step, phase, message and metrics."""
    spec: Mapping[str, Any] | None = field(default=None)
    """The canary's file form (steps and analyses), when it has one, so
    that ``watch`` can finish it."""

    @property
    def total(self) -> int:
        return len(self.steps)

    def describe(self) -> str:
        """``step 2 of 5 (25%), paused for approval``."""
        share = round(100 * self.released / self.replicas) if self.replicas else 0
        what = {
            CanaryPhase.RUNNING: "running",
            CanaryPhase.PAUSED: "paused for approval",
            CanaryPhase.ANALYSING: "analysing",
            CanaryPhase.ABORTING: "aborting",
        }[self.phase]
        text = f"step {self.step + 1} of {self.total} ({share}%), {what}"
        return f"{text}: {self.reason}" if self.reason else text

    def stale(self, now: float, stale_after: float) -> bool:
        """Whether the owner's heartbeat is older than ``stale_after`` seconds."""
        return now - self.heartbeat > stale_after

    def replace(self, **changes: Any) -> CanaryRecord:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["steps"], data["phase"] = list(self.steps), self.phase.value
        return json.dumps(data, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> CanaryRecord:
        data = json.loads(text)
        data["steps"] = tuple(data["steps"])
        data["phase"] = CanaryPhase(data["phase"])
        data["analyses"] = tuple(data.get("analyses") or ())
        return cls(**data)


class CanaryStore:
    """The record and the requests of one service's canary, as Swarm configs."""

    def __init__(self, engine: StackEngine, service: str) -> None:
        self.engine, self.service = engine, service
        self.name = f"{service}_zdd-swarm-canary"
        self.record_id: str | None = None
        """The id of the record this process wrote last (its lock)."""

    def _objects(self) -> list[Any]:
        return self.engine.list_objects("config", {SERVICE_LABEL: self.service})

    def read(self) -> tuple[str, CanaryRecord] | None:
        """The record's id and content, or None without a canary in flight."""
        for obj in self._objects():
            if obj.name == self.name and RECORD_LABEL in obj.labels:
                try:
                    return obj.id, CanaryRecord.from_json(obj.labels[RECORD_LABEL])
                except (ValueError, TypeError, KeyError) as exc:
                    log.warning("canary_record_unreadable", service=self.service, error=str(exc))
        return None

    def create(self, record: CanaryRecord) -> None:
        """Write the first record: ``LockLost`` if one exists already."""
        self.record_id = None
        self._create(record)

    def write(self, record: CanaryRecord) -> None:
        """Replace the record this process wrote: ``LockLost`` if another
        controller removed it (took it over) or wrote its own."""
        if self.record_id is not None:
            self._remove(self.record_id)
        self._create(record)

    def take_over(self, stale_id: str, record: CanaryRecord) -> None:
        """Replace a stale record: ``LockLost`` if another got there first."""
        self._remove(stale_id)
        self._create(record)

    def clear(self) -> None:
        """Remove the record (this process's) and any request left."""
        for obj in self._objects():
            if obj.name == self.name and obj.id != self.record_id:
                continue
            try:
                self.engine.remove_object("config", obj.id)
            except EngineAPIError as exc:
                log.warning("canary_record_not_removed", service=self.service, error=str(exc))
        self.record_id = None

    def request(self, request: Request) -> None:
        """Ask the owner to ``promote`` or ``abort`` (asking twice is asking once)."""
        spec = {
            "Name": f"{self.name}-{request.value}",
            "Labels": {SERVICE_LABEL: self.service, REQUEST_LABEL: request.value},
            "Data": f"zdd-swarm canary: {request.value}\n".encode(),
        }
        try:
            self.engine.create_object("config", spec)
        except EngineAPIError as exc:
            if exc.status_code != 409:
                raise

    def requests(self) -> dict[Request, str]:
        """Requests waiting: request -> config id."""
        found = {}
        for obj in self._objects():
            value = obj.labels.get(REQUEST_LABEL)
            if value in tuple(Request):
                found[Request(value)] = obj.id
        return found

    def consume(self, object_id: str) -> None:
        try:
            self.engine.remove_object("config", object_id)
        except EngineAPIError as exc:
            if exc.status_code != 404:
                raise

    def _remove(self, object_id: str) -> None:
        try:
            self.engine.remove_object("config", object_id)
        except EngineAPIError as exc:
            if exc.status_code == 404:
                raise LockLost(
                    f"service {self.service!r}: another controller took the canary over"
                ) from exc
            raise

    def _create(self, record: CanaryRecord) -> None:
        spec = {
            "Name": self.name,
            "Labels": {SERVICE_LABEL: self.service, RECORD_LABEL: record.to_json()},
            "Data": b"zdd-swarm canary in flight\n",
        }
        try:
            self.record_id = self.engine.create_object("config", spec)
        except EngineAPIError as exc:
            if exc.status_code == 409:
                self.record_id = None
                raise LockLost(
                    f"service {self.service!r}: another controller drives its canary"
                ) from exc
            raise
