"""The typed result of a rollout: what happened, why, batch by batch."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "BatchReport",
    "GateReport",
    "Outcome",
    "Reason",
    "RolloutResult",
    "TaskReport",
]


class Outcome(enum.StrEnum):
    """How a rollout ended. Each maps to one CLI exit code."""

    COMPLETED = "completed"
    """The new spec runs everywhere (or there was nothing to do)."""
    ROLLED_BACK = "rolled_back"
    """The release did not go out: the service runs its previous spec again."""
    PAUSED = "paused"
    """The engine paused the update, or a threshold was crossed with failure_action pause:
    we stopped watching and changed nothing more. Swarm has no pause call, so its own
    updater may still be going (stuck, typically). A human is needed."""
    SUPERSEDED = "superseded"
    """Another client changed the service during the rollout; we stopped watching and did
    not overwrite their change."""
    ROLLBACK_FAILED = "rollback_failed"
    """A rollback was needed and did not reach a healthy previous spec."""
    FAILED = "failed"
    """A threshold was crossed and, per configuration, nothing was undone (failure_action
    continue), or the overall timeout ran out."""

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES[self]

    @property
    def ok(self) -> bool:
        return self is Outcome.COMPLETED


_EXIT_CODES = {
    Outcome.COMPLETED: 0,
    Outcome.ROLLED_BACK: 1,
    Outcome.PAUSED: 3,
    Outcome.SUPERSEDED: 3,
    Outcome.FAILED: 3,
    Outcome.ROLLBACK_FAILED: 4,
}


@dataclass(frozen=True)
class Reason:
    """Why a rollout ended: a stable ``code`` for programs, ``message`` for people."""

    code: str
    message: str


@dataclass
class TaskReport:
    id: str
    slot: str
    node: str
    state: str
    desired_state: str
    error: str = ""
    exit_code: int | None = None
    seen_at: float = 0.0
    """seconds since the rollout began when we first saw the task"""
    running_at: float | None = None
    """seconds since the rollout began when it was RUNNING (healthy), if ever"""
    failure: str | None = None
    """why it counts as failed ("failed", "task_deadline"), if it does"""


@dataclass
class GateReport:
    gate: str
    passed: bool | None  # None: still being checked, or never started
    samples: int = 0
    successes: int = 0
    detail: str = ""


@dataclass
class BatchReport:
    index: int
    phase: str  # "update" or "rollback"
    tasks: list[TaskReport] = field(default_factory=list)
    started_at: float = 0.0
    running_at: float | None = None
    completed_at: float | None = None
    gates: list[GateReport] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(t.failure for t in self.tasks) or any(g.passed is False for g in self.gates)


@dataclass
class RolloutResult:
    service: str
    outcome: Outcome
    reason: Reason
    started_at: datetime
    duration_s: float
    image_before: str
    image_target: str
    image_after: str
    """the image the service's spec names at the end"""
    version_before: int
    version_after: int
    batches: list[BatchReport] = field(default_factory=list)
    failures: int = 0
    total: int = 0
    rollback_by: str | None = None
    """Who started a rollback, if one happened: ``zdd_swarm``, ``engine`` or ``other``."""
    warnings: list[str] = field(default_factory=list)
    placement: dict[str, list[str]] = field(default_factory=dict)
    """where each task of the service runs at the end: node -> task states"""

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code

    @property
    def code(self) -> str:
        return self.reason.code

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the CLI's ``--json``)."""
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["code"] = self.reason.code
        data["reason"] = self.reason.message
        data["started_at"] = self.started_at.isoformat()
        data["exit_code"] = self.exit_code
        for batch, report in zip(data["batches"], self.batches, strict=True):
            batch["failed"] = report.failed
        return data

    def summary(self) -> str:
        """One line for people."""
        return (
            f"{self.service}: {self.outcome.value} ({self.reason.code}) in {self.duration_s:.1f}s, "
            f"{len(self.batches)} batches, {self.failures} failed tasks: {self.reason.message}"
        )
