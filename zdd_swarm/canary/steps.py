"""The steps of a canary, as Argo Rollouts' canary strategy has them.

A canary is a list of steps run in order: ``SetWeight`` puts a share of the
service's tasks on the new release, ``Pause`` waits (a duration, or until a
person promotes), ``Analysis`` runs named checks. A pure model: frozen
dataclasses validated on construction, parsers for the three written forms
(CLI strings, and the list of a canary file or a compose file's
``x-zdd-swarm``, read by ``zdd_swarm.canary.spec``), no I/O.

Rules of a step list (``validate_steps``): at least one weight, weights
never decreasing, the last weight 100 %, analysis names known. An invalid
step raises ``StepError`` naming ``steps[INDEX].FIELD``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeAlias

from ..config import parse_duration
from ..errors import ConfigError, StepError

__all__ = [
    "Analysis",
    "Pause",
    "SetWeight",
    "Step",
    "parse_step",
    "parse_steps",
    "step_text",
    "steps_from_data",
    "tasks_for_share",
    "validate_steps",
]

_WEIGHT_ALLOWED = "a share such as '10%' (1-100) or a number of tasks >= 1"
_PAUSE_ALLOWED = "a duration > 0 such as '2m', or nothing: wait until promoted"
_ANALYSIS_ALLOWED = "the name of an analysis, or several separated by ','"
_STEP_ALLOWED = "'N%', 'N' (tasks), 'pause', 'pause=DURATION' or 'analysis=NAME'"
_MAPPING_ALLOWED = (
    "a mapping with one key: set (or setWeight), pause or analysis; or a string such as '10%'"
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_PERCENT = re.compile(r"(\d+)\s*%")


@dataclass(frozen=True)
class SetWeight:
    """Put a share of the tasks on the new release: ``percent`` of them
    (1-100), or exactly ``tasks``. One of the two."""

    percent: int | None = None
    tasks: int | None = None

    def __post_init__(self) -> None:
        if (self.percent is None) == (self.tasks is None):
            raise ConfigError("set", (self.percent, self.tasks), "either percent or tasks")
        for name, low, high in (("percent", 1, 100), ("tasks", 1, None)):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(name, value, _WEIGHT_ALLOWED)
            if value < low or (high is not None and value > high):
                raise ConfigError(name, value, _WEIGHT_ALLOWED)

    @property
    def full(self) -> bool:
        """Every task: 100 %."""
        return self.percent == 100

    def task_count(self, replicas: int) -> int:
        """How many of ``replicas`` tasks run the new release at this step
        (``tasks_for_share`` for a percentage; a count larger than
        ``replicas`` raises ``ConfigError``)."""
        if self.percent is not None:
            return tasks_for_share(self.percent, replicas)
        assert self.tasks is not None
        if self.tasks > replicas:
            raise ConfigError("tasks", self.tasks, f"at most the service's {replicas} replicas")
        return self.tasks

    def __str__(self) -> str:
        return f"{self.percent}%" if self.percent is not None else f"{self.tasks} tasks"


@dataclass(frozen=True)
class Pause:
    """Wait ``duration``; with no duration, wait until a person promotes."""

    duration: timedelta | None = None

    def __post_init__(self) -> None:
        if self.duration is not None and (
            not isinstance(self.duration, timedelta) or self.duration <= timedelta(0)
        ):
            raise ConfigError("pause", self.duration, _PAUSE_ALLOWED)

    @property
    def until_promoted(self) -> bool:
        return self.duration is None

    def __str__(self) -> str:
        if self.duration is None:
            return "pause until promoted"
        return f"pause {self.duration.total_seconds():g}s"


@dataclass(frozen=True)
class Analysis:
    """Run the analyses named ``templates`` (defined by the rollout's
    analysis templates); all must pass for the canary to go on."""

    templates: tuple[str, ...]

    def __post_init__(self) -> None:
        names = self.templates
        if (
            isinstance(names, str)
            or not isinstance(names, tuple)
            or not names
            or not all(isinstance(n, str) and _NAME.fullmatch(n) for n in names)
        ):
            raise ConfigError("analysis", names, _ANALYSIS_ALLOWED)

    def __str__(self) -> str:
        return "analysis " + ", ".join(self.templates)


Step: TypeAlias = SetWeight | Pause | Analysis


def tasks_for_share(percent: int, replicas: int) -> int:
    """The number of ``replicas`` tasks that best approximates ``percent``.

    The nearest count (a half rounds up), but for a share between 1 and 99 %
    of two or more replicas at least one task on each release, as Argo
    Rollouts does for a canary without traffic routing
    (``approximateWeightedCanaryStableReplicaCounts``: "If the canary weight
    is between 1-99, and spec.replicas is > 1, we will always return a
    minimum of 1 for stable and canary as to not return 0"). A single
    replica has no canary: any share > 0 is its one task. 100 % is every
    task, 0 % none.
    """
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise ConfigError("replicas", replicas, "an integer >= 0")
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise ConfigError("percent", percent, "an integer from 0 to 100")
    if percent in (0, 100) or replicas == 0:
        return replicas if percent == 100 else 0
    nearest = (replicas * percent * 2 + 100) // 200
    if replicas == 1:
        return 1
    return min(max(nearest, 1), replicas - 1)


def step_text(step: Step) -> str:
    """A step in its CLI form, which ``parse_step`` reads back."""
    if isinstance(step, SetWeight):
        return f"{step.percent}%" if step.percent is not None else str(step.tasks)
    if isinstance(step, Pause):
        if step.duration is None:
            return "pause"
        return f"pause={step.duration.total_seconds():g}s"
    return "analysis=" + ",".join(step.templates)


# -- parsing -------------------------------------------------------------------


def _weight(index: int, field: str, value: object, percent_only: bool = False) -> SetWeight:
    """A weight from ``10%``, ``"3"`` or 3 (tasks); Argo's ``setWeight`` is a
    percentage given as a bare number (``percent_only``)."""
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return SetWeight(percent=value) if percent_only else SetWeight(tasks=value)
        if isinstance(value, str):
            text = value.strip()
            match = _PERCENT.fullmatch(text)
            if match:
                return SetWeight(percent=int(match.group(1)))
            if text.isdigit():
                number = int(text)
                return SetWeight(percent=number) if percent_only else SetWeight(tasks=number)
    except ConfigError as exc:
        raise StepError(index, field, value, exc.allowed) from exc
    raise StepError(index, field, value, _WEIGHT_ALLOWED)


def _pause(index: int, value: object) -> Pause:
    if value is None or value == {} or value == "":
        return Pause()
    if isinstance(value, Mapping):  # Argo: pause: {duration: 2m}
        if set(value) != {"duration"}:
            raise StepError(index, "pause", value, "{duration: DURATION} or {} (until promoted)")
        return _pause(index, value["duration"])
    try:
        return Pause(parse_duration(value, "pause"))  # type: ignore[arg-type]  # checked there
    except ConfigError as exc:
        raise StepError(index, "pause", value, _PAUSE_ALLOWED) from exc


def _analysis(index: int, value: object) -> Analysis:
    names: object = value
    if isinstance(value, Mapping):  # Argo: analysis: {templates: [{templateName: x}]}
        templates = value.get("templates")
        if set(value) != {"templates"} or not isinstance(templates, list):
            raise StepError(index, "analysis", value, "{templates: [{templateName: NAME}]}")
        names = [t.get("templateName") if isinstance(t, Mapping) else t for t in templates]
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",")]
    try:
        return Analysis(tuple(names) if isinstance(names, list | tuple) else names)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise StepError(index, "analysis", value, exc.allowed) from exc


def parse_step(text: str, index: int = 0) -> Step:
    """One step from its CLI form: ``10%`` and ``3`` (tasks) set a weight,
    ``pause=2m`` waits, ``pause`` waits until promoted, ``analysis=errors``
    (or ``analysis=errors,latency``) runs analyses. Errors name ``index``."""
    if not isinstance(text, str):
        raise StepError(index, "step", text, _STEP_ALLOWED)
    key, sep, value = text.strip().partition("=")
    key = key.strip().lower()
    if key == "pause":
        return _pause(index, value.strip() if sep else None)
    if key == "analysis" and sep:
        return _analysis(index, value)
    if key in ("set", "weight") and sep:
        return _weight(index, "set", value)
    if not sep and (key.isdigit() or _PERCENT.fullmatch(key)):
        return _weight(index, "set", key)
    raise StepError(index, "step", text, _STEP_ALLOWED)


def _step_from_item(index: int, item: object) -> Step:
    if isinstance(item, str):
        return parse_step(item, index)
    if not isinstance(item, Mapping) or len(item) != 1:
        raise StepError(index, "step", item, _MAPPING_ALLOWED)
    ((key, value),) = item.items()
    if key == "set":
        return _weight(index, "set", value)
    if key == "setWeight":
        return _weight(index, "setWeight", value, percent_only=True)
    if key == "pause":
        return _pause(index, value)
    if key == "analysis":
        return _analysis(index, value)
    raise StepError(index, str(key), value, _MAPPING_ALLOWED)


def parse_steps(
    texts: Iterable[str],
    analyses: Collection[str] | None = None,
    replicas: int | None = None,
) -> tuple[Step, ...]:
    """Steps from their CLI forms (``--step`` repeated), validated with
    ``validate_steps``."""
    return validate_steps([parse_step(text, i) for i, text in enumerate(texts)], analyses, replicas)


def steps_from_data(
    data: object,
    analyses: Collection[str] | None = None,
    replicas: int | None = None,
) -> tuple[Step, ...]:
    """Steps from their file form: a list whose items are CLI strings or
    one-key mappings (``set: 10%``, ``set: 3``, ``pause: 2m``, ``pause:`` for
    until promoted, ``analysis: errors``), Argo Rollouts' own forms accepted
    too (``setWeight: 10``, ``pause: {duration: 2m}``, ``pause: {}``,
    ``analysis: {templates: [{templateName: errors}]}``)."""
    if isinstance(data, str | bytes | Mapping) or not isinstance(data, Sequence):
        raise ConfigError("steps", data, "a list of steps")
    steps = [_step_from_item(i, item) for i, item in enumerate(data)]
    return validate_steps(steps, analyses, replicas)


def validate_steps(
    steps: Sequence[Step],
    analyses: Collection[str] | None = None,
    replicas: int | None = None,
) -> tuple[Step, ...]:
    """``steps`` as a tuple, checked as a whole: at least one weight, each
    weight not below the one before (in percent, or in tasks; both resolved
    to tasks when ``replicas`` is known), the last weight 100 %, every
    analysis name in ``analyses`` (when given)."""
    _check_weights(steps, replicas)
    if analyses is not None:
        known = ", ".join(sorted(analyses)) or "none defined"
        for index, step in enumerate(steps):
            for name in step.templates if isinstance(step, Analysis) else ():
                if name not in analyses:
                    raise StepError(index, "analysis", name, f"a defined analysis ({known})")
    return tuple(steps)


def _check_weights(steps: Sequence[Step], replicas: int | None) -> None:
    weights = [(i, s) for i, s in enumerate(steps) if isinstance(s, SetWeight)]
    if not weights:
        raise ConfigError("steps", [str(s) for s in steps], "a list with a weight, ending at 100%")
    last: dict[str, int] = {}  # unit -> index of the last weight in that unit
    for index, step in weights:
        unit = "percent" if step.percent is not None else "tasks"
        if replicas is not None:
            unit = "tasks"
            try:
                step.task_count(replicas)
            except ConfigError as exc:
                raise StepError(index, "set", str(step), exc.allowed) from exc
        before = last.get(unit)
        if before is not None and _in(steps[before], unit, replicas) > _in(step, unit, replicas):
            raise StepError(index, "set", str(step), f"not below step {before}'s {steps[before]}")
        last[unit] = index
    index, final = weights[-1]
    if not final.full:
        raise StepError(index, "set", str(final), "100% for the last weight: every task")


def _in(step: Step, unit: str, replicas: int | None) -> int:
    """A weight step's value in ``unit`` (tasks resolved with ``replicas``)."""
    assert isinstance(step, SetWeight)
    if replicas is not None:
        return step.task_count(replicas)
    value = step.percent if unit == "percent" else step.tasks
    assert value is not None
    return value
