"""Typed events, delivered to user hooks while a rollout runs.

Logging and progress display are just subscribers: the controller logs
every event with structlog (``service`` and ``batch`` bound) and calls each
hook with the event object. A hook that raises is logged and ignored: a
broken notifier must never change the outcome of a rollout.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .result import RolloutResult

__all__ = [
    "BatchCompleted",
    "BatchStarted",
    "BlueGreenStage",
    "CanaryStep",
    "EngineUnreachable",
    "Event",
    "GateFailed",
    "Hook",
    "Progress",
    "RollbackStarted",
    "RolloutFinished",
    "RolloutStarted",
    "TaskFailed",
    "TaskRunning",
    "ThresholdCrossed",
]


@dataclass(frozen=True)
class Event:
    """Base of all events: the service and seconds since the rollout began."""

    service: str
    elapsed: float

    @property
    def name(self) -> str:
        """snake_case event name, as logged (``batch_started``)."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()

    def fields(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("service")
        return data


Hook = Callable[[Event], None]


@dataclass(frozen=True)
class RolloutStarted(Event):
    phase: str  # "update", "watch" or "rollback"
    image_before: str
    image_after: str
    version: int
    total: int
    parallelism: int
    order: str


@dataclass(frozen=True)
class BatchStarted(Event):
    batch: int
    slots: tuple[str, ...]
    phase: str = "update"


@dataclass(frozen=True)
class TaskRunning(Event):
    batch: int
    task_id: str
    node: str
    seconds_to_running: float | None
    phase: str = "update"


@dataclass(frozen=True)
class TaskFailed(Event):
    batch: int
    task_id: str
    node: str
    state: str
    error: str
    exit_code: int | None
    cause: str
    """"failed" (the engine says so) or "task_deadline" (not RUNNING in time)"""
    phase: str = "update"


@dataclass(frozen=True)
class GateFailed(Event):
    batch: int
    gate: str
    detail: str


@dataclass(frozen=True)
class BatchCompleted(Event):
    batch: int
    seconds: float


@dataclass(frozen=True)
class Progress(Event):
    phase: str
    running: int
    total: int
    failed: int


@dataclass(frozen=True)
class ThresholdCrossed(Event):
    code: str
    reason: str
    failures: int
    total: int
    max_failure_ratio: float
    action: str


@dataclass(frozen=True)
class RollbackStarted(Event):
    by: str
    """``zdd_swarm`` (we asked), ``engine`` (Swarm's own failure_action), or ``other``."""
    reason: str
    method: str = "engine-rollback"


@dataclass(frozen=True)
class EngineUnreachable(Event):
    error: str
    seconds: float


@dataclass(frozen=True)
class RolloutFinished(Event):
    outcome: str
    code: str
    reason: str
    result: RolloutResult | None = field(default=None, repr=False, compare=False)

    def fields(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "code": self.code,
            "reason": self.reason,
            "elapsed": self.elapsed,
        }


@dataclass(frozen=True)
class CanaryStep(Event):
    """A canary begins one of its steps (``index`` 0-based of ``total``):
    ``25%``, ``pause 2m``, ``analysis errors``."""

    index: int
    total: int
    step: str


@dataclass(frozen=True)
class BlueGreenStage(Event):
    """A stage of a blue-green operation ended (``service`` is the app;
    stages: ``zdd_swarm.bluegreen.Stage``)."""

    stage: str
    colour: str
    """the colour the operation releases (or switches) to"""
    ok: bool
    detail: str = ""
    samples: int = 0
    """checks sampled in this stage (preview, post_switch): one request or probe each"""
    failed: int = 0
    """of them, how many failed"""
    analysis: Mapping[str, Any] | None = None
    """the stage's analysis (preview, post_switch), if it ran: its phase, message and
    metrics (``zdd_swarm.canary.analysis.analysis_summary``)"""
