"""Blue-green, the pure part: colours, the pair's state in service labels,
the idle colour's spec, outcomes and reason codes. No I/O.

The pair of an app ``web`` is two Swarm services, ``web-blue`` and
``web-green``. The state (the active colour, a colour under preview, when
the old colour scales down) is kept with them, as labels of both services
(``zdd-swarm.bluegreen.*``); the copy with the higher ``seq`` wins. A label
is part of the service's annotations, not its task template, so writing
one restarts no task (swarmkit ``manager/orchestrator/task.go``,
IsTaskDirty compares only "serviceTaskSpec := *s.Spec.Task.Copy()" and
"s.Spec.Endpoint").
"""

from __future__ import annotations

import copy
import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from ..model import parse_timestamp
from ..result import Reason, RolloutResult

__all__ = [
    "LABEL_PREFIX",
    "BlueGreenCode",
    "BlueGreenOutcome",
    "BlueGreenResult",
    "CheckCount",
    "Colour",
    "PairState",
    "RouterSpec",
    "colour_spec",
]

LABEL_PREFIX = "zdd-swarm.bluegreen."
LABEL_APP = LABEL_PREFIX + "app"
LABEL_COLOUR = LABEL_PREFIX + "colour"
LABEL_ACTIVE = LABEL_PREFIX + "active"
LABEL_PREVIEW = LABEL_PREFIX + "preview"
LABEL_SCALE_DOWN_AT = LABEL_PREFIX + "scale-down-at"
LABEL_SEQ = LABEL_PREFIX + "seq"
LABEL_LOCK = LABEL_PREFIX + "lock"
"""On one colour while an operation switches the pair: ``<owner> <since> <operation>``."""
LEASE_TTL = timedelta(seconds=30)
"""A lock whose lease (``lease.py``) was not renewed for this long belongs to a
process that is gone."""
SCALE_DOWN_DELAY = timedelta(seconds=30)
"""How long the old colour stays up after a switch, unless told otherwise."""
LABEL_FAILED = LABEL_PREFIX + "failed"
"""On a colour: the image of a release that failed on it (``rollback`` will
not switch to that image)."""

LABEL_LAST = LABEL_PREFIX + "last"
"""On both colours: the result of the last operation, as JSON (``BlueGreenResult.to_record``);
written before the operation gives its lock back, so a watcher that sees no lock reads it."""

LABEL_ROUTER = LABEL_PREFIX + "router"
"""On both colours: the router the pair was last deployed with (``RouterSpec``, as JSON),
so that ``promote`` and ``rollback`` need no ``--router``."""

LABEL_SCALE_DOWN_DELAY = LABEL_PREFIX + "scale-down-delay"
"""On both colours: the scale-down delay of the last deploy (``90s``), for its
``promote`` and a ``rollback`` that give none."""

#: Labels that say another strategy of ours manages a service.
OTHER_STRATEGIES = ("zdd-swarm.",)


class Colour(enum.StrEnum):
    BLUE = "blue"
    GREEN = "green"

    @property
    def other(self) -> Colour:
        return Colour.GREEN if self is Colour.BLUE else Colour.BLUE

    def service(self, app: str) -> str:
        """The Swarm service of this colour: ``<app>-<colour>``."""
        return f"{app}-{self.value}"


class BlueGreenOutcome(enum.StrEnum):
    """How a blue-green operation ended; each maps to one CLI exit code."""

    SWITCHED = "switched"
    """The router sends traffic to the new colour (or back to the standby, for rollback)."""
    AWAITING_PROMOTE = "awaiting_promote"
    """The new colour is up and passed its checks; ``promote`` switches to it."""
    NOT_SWITCHED = "not_switched"
    """The release failed before the switch: the router was not touched and the new colour
    was scaled back to 0."""
    SWITCHED_BACK = "switched_back"
    """The release failed after the switch: the router was switched back at once and the new
    colour scaled back to 0."""
    SWITCH_BACK_FAILED = "switch_back_failed"
    """The switch back failed: a person is needed."""
    IN_FLIGHT = "in_flight"
    """A watch stopped with the operation still in flight (or its process gone)."""
    INTERRUPTED = "interrupted"
    """The operation's process was gone; a watch took it over and left the pair safe
    (``takeover.py``), but the operation did not finish."""

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES[self]


_EXIT_CODES = {
    BlueGreenOutcome.SWITCHED: 0,
    BlueGreenOutcome.AWAITING_PROMOTE: 0,
    BlueGreenOutcome.NOT_SWITCHED: 1,
    BlueGreenOutcome.SWITCHED_BACK: 1,
    BlueGreenOutcome.SWITCH_BACK_FAILED: 4,
    BlueGreenOutcome.IN_FLIGHT: 3,
    BlueGreenOutcome.INTERRUPTED: 1,
}


class BlueGreenCode(enum.StrEnum):
    """Stable reason codes of a blue-green result."""

    SWITCHED = "switched"
    ROLLED_BACK = "rolled_back"
    AWAITING_PROMOTE = "awaiting_promote"
    PREVIEW_DISCARDED = "preview_discarded"
    IDLE_UNHEALTHY = "idle_unhealthy"
    PREVIEW_CHECK_FAILED = "preview_check_failed"
    ANALYSIS_FAILED = "analysis_failed"
    """An analysis of the preview (not switched) or after the switch (switched back) failed."""
    SWITCH_NOT_EFFECTIVE = "switch_not_effective"
    POST_SWITCH_CHECK_FAILED = "post_switch_check_failed"
    SWITCH_BACK_FAILED = "switch_back_failed"
    WATCH_TIMEOUT = "watch_timeout"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class PairState:
    """What the labels of the pair say."""

    active: Colour
    preview: Colour | None = None
    scale_down_at: datetime | None = None
    """When the colour that is not active scales to 0 (None: nothing pending)."""
    seq: int = 0

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> PairState | None:
        """The state in a service's labels; None when it carries none (or an unreadable one)."""
        try:
            active = Colour(labels[LABEL_ACTIVE])
            preview = labels.get(LABEL_PREVIEW)
            return cls(
                active=active,
                preview=Colour(preview) if preview else None,
                scale_down_at=parse_timestamp(labels.get(LABEL_SCALE_DOWN_AT)),
                seq=int(labels.get(LABEL_SEQ, "0")),
            )
        except (KeyError, ValueError):
            return None

    def labels(self) -> dict[str, str]:
        """The state as labels (an empty value removes the label)."""
        return {
            LABEL_ACTIVE: self.active.value,
            LABEL_PREVIEW: self.preview.value if self.preview else "",
            LABEL_SCALE_DOWN_AT: self.scale_down_at.isoformat() if self.scale_down_at else "",
            LABEL_SEQ: str(self.seq),
        }

    def next(self, **changes: Any) -> PairState:
        """The state that follows this one (``seq`` moves on)."""
        return replace(self, seq=self.seq + 1, **changes)


@dataclass(frozen=True)
class RouterSpec:
    """A router as ``--router`` names it (``labels:PREFIX[,PREFIX...]``,
    ``nginx:SERVICE``, ``haproxy:SERVICE``), with its service and address, if given."""

    router: str
    service: str | None = None
    """``--router-service``"""
    url: str | None = None
    """``--router-url``"""
    answer: str | None = None
    """``--router-answer``"""

    def to_label(self) -> str:
        fields = {"router": self.router, "service": self.service, "url": self.url}
        fields["answer"] = self.answer
        return json.dumps({k: v for k, v in fields.items() if v}, separators=(",", ":"))

    @classmethod
    def from_label(cls, text: str | None) -> RouterSpec | None:
        """The spec a ``router`` label holds (None: none, or not readable)."""
        try:
            data = json.loads(text or "")
            values = [data.get(k) for k in ("router", "service", "url", "answer")]
        except (ValueError, AttributeError):
            return None
        if not all(isinstance(v, str | None) for v in values) or not values[0]:
            return None
        return cls(*values)


def lock_fields(lock: str) -> tuple[str, str, str]:
    """The owner, since and operation of a lock (``<owner> <since> <operation>``;
    a field it lacks is empty)."""
    owner, _, rest = lock.partition(" ")
    since, _, operation = rest.partition(" ")
    return owner, since, operation


def with_labels(labels: Mapping[str, str], changes: Mapping[str, str]) -> dict[str, str]:
    """``labels`` with ``changes`` applied: an empty value removes the key."""
    result = {k: v for k, v in labels.items() if k not in changes}
    result.update({k: v for k, v in changes.items() if v})
    return result


def colour_spec(
    source: Mapping[str, Any],
    app: str,
    colour: Colour,
    *,
    image: str | None = None,
    replicas: int = 0,
    keep: Mapping[str, str] | None = None,
    routes: Callable[[str], bool] = lambda _key: False,
) -> dict[str, Any]:
    """The spec of ``colour`` made from the active colour's ``source`` spec.

    Every field is copied (labels, env, mounts, secrets, configs, networks,
    update and rollback config, ...); only the name, the image, the replica
    count and our own labels differ. Labels for which ``routes`` is true
    (the router's, which send traffic to the active colour) are not copied:
    the switch moves them. ``keep`` are the labels of ours that the colour
    already has.
    """
    spec = copy.deepcopy(dict(source))
    spec["Name"] = colour.service(app)
    labels = {
        k: v
        for k, v in (spec.get("Labels") or {}).items()
        if not k.startswith(LABEL_PREFIX) and not routes(k)
    }
    labels.update(dict(keep or {}))
    labels.update({LABEL_APP: app, LABEL_COLOUR: colour.value})
    labels.pop(LABEL_FAILED, None)
    spec["Labels"] = labels
    if image is not None:
        spec.setdefault("TaskTemplate", {}).setdefault("ContainerSpec", {})["Image"] = image
    spec["Mode"] = {"Replicated": {"Replicas": replicas}}
    return spec


def ours(labels: Mapping[str, str]) -> dict[str, str]:
    """The pair's state labels among ``labels``."""
    return {k: v for k, v in labels.items() if k.startswith(LABEL_PREFIX)}


@dataclass(frozen=True)
class CheckCount:
    """The samples the checks of one stage took (each one request or probe),
    and how many of them failed."""

    samples: int = 0
    failed: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"samples": self.samples, "failed": self.failed}


@dataclass
class BlueGreenResult:
    """The end of a blue-green operation: what happened, why, on which colours."""

    app: str
    outcome: BlueGreenOutcome
    reason: Reason
    active: Colour
    """The colour the router sends traffic to at the end."""
    target: Colour
    """The colour this operation released to (or switched to)."""
    image: str = ""
    """The image released to ``target``."""
    duration_s: float = 0.0
    switch_s: float | None = None
    """Seconds from the switch call until the router showed the switch (None: no switch)."""
    switch_back_s: float | None = None
    """Seconds from the switch-back call until the router showed it (None: no switch back)."""
    rollout: RolloutResult | None = None
    """How the target colour scaled up (the rolling-update watch of its tasks and gates)."""
    steps: list[str] = field(default_factory=list)
    """The stages gone through, in order."""
    checks: dict[str, CheckCount] = field(default_factory=dict)
    """Per stage (``preview``, ``post_switch``): the samples its checks took, and failed."""
    analyses: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per stage (``preview``, ``post_switch``): how its analysis ended, its phase,
    message and every metric's result (``zdd_swarm.canary.analysis.analysis_summary``)."""

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code

    @property
    def code(self) -> str:
        return self.reason.code

    def summary(self) -> str:
        return (
            f"{self.app}: {self.outcome.value} ({self.reason.code}) in {self.duration_s:.1f}s, "
            f"active {self.active.value}: {self.reason.message}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "outcome": self.outcome.value,
            "code": self.reason.code,
            "reason": self.reason.message,
            "exit_code": self.exit_code,
            "active": self.active.value,
            "target": self.target.value,
            "image": self.image,
            "duration_s": self.duration_s,
            "switch_s": self.switch_s,
            "switch_back_s": self.switch_back_s,
            "checks": {stage: count.to_dict() for stage, count in self.checks.items()},
            "analyses": dict(self.analyses),
            "steps": list(self.steps),
            "rollout": self.rollout.to_dict() if self.rollout else None,
        }

    def to_record(self) -> str:
        """The result as the ``last`` label holds it (JSON, without the rollout's detail)."""
        return json.dumps({**self.to_dict(), "rollout": None}, separators=(",", ":"))

    @classmethod
    def from_record(cls, text: str) -> BlueGreenResult | None:
        """The result a ``last`` label holds (None: none, or not readable)."""
        try:
            data = json.loads(text)
            return cls(
                data["app"],
                BlueGreenOutcome(data["outcome"]),
                Reason(data["code"], data["reason"]),
                Colour(data["active"]),
                Colour(data["target"]),
                image=data.get("image") or "",
                duration_s=float(data.get("duration_s") or 0.0),
                switch_s=data.get("switch_s"),
                switch_back_s=data.get("switch_back_s"),
                steps=list(data.get("steps") or []),
                checks={k: CheckCount(**v) for k, v in (data.get("checks") or {}).items()},
                analyses=dict(data.get("analyses") or {}),
            )
        except (ValueError, TypeError, KeyError):
            return None
