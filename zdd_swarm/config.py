"""Docker Swarm's ``update_config`` and ``rollback_config``, typed and validated.

A pure model (no I/O) of the settings Swarm applies to a rolling update or
rollback, with Swarm's own defaults: parallelism 1, delay 0, failure action
``pause``, monitor 5s, max failure ratio 0, order ``stop-first``. docker-py's
``docker.types.UpdateConfig`` does not share them (it sends parallelism 0,
all tasks at once, and leaves the failure action to whatever the caller
passes), so a config built with it can update far more aggressively than
``docker service update`` would. This module is the one place the defaults,
the three wire forms (Python, Engine API, compose file) and the checks live.

How Swarm uses these settings (swarmkit, ``manager/orchestrator/update``):
a new task counts as failed when it reaches a state past RUNNING and either
never started or started at most ``monitor`` earlier; the failure action
fires once ``failures / tasks_to_update > max_failure_ratio`` (strictly
greater). After the last batch Swarm keeps watching for ``monitor``, or for
``delay + 1s`` when ``delay >= monitor``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, NamedTuple, Self, TypeAlias

from .errors import ConfigError
from .gates import Gate, as_gates

__all__ = [
    "DurationLike",
    "FailureAction",
    "KubernetesMapping",
    "LintWarning",
    "Order",
    "RollbackConfig",
    "UpdateConfig",
    "configs_from_compose",
    "format_duration",
    "from_nanoseconds",
    "lint",
    "parse_duration",
    "to_nanoseconds",
]

DurationLike: TypeAlias = timedelta | int | float | str
"""What a duration may be given as: a timedelta, seconds as a number, or a
Go / compose duration string (``"10s"``, ``"1m30s"``, ``"500ms"``)."""


class Order(enum.StrEnum):
    """Whether a new task starts before or after the old one is stopped."""

    START_FIRST = "start-first"
    STOP_FIRST = "stop-first"


class FailureAction(enum.StrEnum):
    """What Swarm does when too many new tasks fail."""

    CONTINUE = "continue"
    PAUSE = "pause"
    ROLLBACK = "rollback"


# -- durations ----------------------------------------------------------------

_DURATION_ALLOWED = "a duration such as '10s', '1m30s' or '500ms', or seconds as a number, >= 0"
_NS_PER_US = 1_000
_NS_PER_S = 1_000_000_000
#: Go's time.Duration is an int64 count of nanoseconds; the engine stores that.
_MAX_NS = 2**63 - 1
_UNIT_NS = {
    "ns": 1,
    "us": _NS_PER_US,
    "µs": _NS_PER_US,  # U+00B5 MICRO SIGN, what Go prints
    "μs": _NS_PER_US,  # U+03BC GREEK SMALL LETTER MU, also accepted by Go
    "ms": 1_000_000,
    "s": _NS_PER_S,
    "m": 60 * _NS_PER_S,
    "h": 3600 * _NS_PER_S,
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_BARE_NUMBER = re.compile(rf"([+-]?)({_NUMBER})")
_GO_DURATION = re.compile(rf"([+-]?)((?:{_NUMBER}[a-zµμ]+)+)")
_GO_COMPONENT = re.compile(r"(\d*)(?:\.(\d*))?([a-zµμ]+)")


def _number_ns(whole: str, frac: str, unit_ns: int) -> int:
    """``whole.frac`` units in nanoseconds, the fraction truncated as Go does."""
    ns = int(whole or "0") * unit_ns
    if frac:
        ns += int(frac) * unit_ns // 10 ** len(frac)
    return ns


def _parse_duration_string(text: str) -> int | None:
    """Nanoseconds (signed) for a Go duration or bare number of seconds, else None."""
    bare = _BARE_NUMBER.fullmatch(text)
    if bare:
        whole, _, frac = bare.group(2).partition(".")
        ns = _number_ns(whole, frac, _NS_PER_S)
        return -ns if bare.group(1) == "-" else ns
    match = _GO_DURATION.fullmatch(text)
    if match is None:
        return None
    ns = 0
    for component in _GO_COMPONENT.finditer(match.group(2)):
        unit_ns = _UNIT_NS.get(component.group(3))
        if unit_ns is None:
            return None
        ns += _number_ns(component.group(1), component.group(2) or "", unit_ns)
    return -ns if match.group(1) == "-" else ns


def parse_duration(value: DurationLike, field: str = "duration") -> timedelta:
    """A duration from a timedelta, seconds (int or float) or a string.

    Strings take Go's ``time.ParseDuration`` form, as compose files and the
    docker CLI do (``"500ms"``, ``"10s"``, ``"1m30s"``, ``"1.5h"``,
    ``"250us"``/``"250µs"``, ``"100ns"``, ``"0"``); a bare number such as
    ``"10"`` means seconds. Precision is the microsecond (timedelta's):
    finer parts are dropped. Negative, non-finite, boolean and unparsable
    values, and durations beyond Go's int64 nanoseconds, raise
    ``ConfigError`` naming ``field``.
    """
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool):
        raise ConfigError(field, value, _DURATION_ALLOWED)
    elif isinstance(value, int | float):
        if not math.isfinite(value):
            raise ConfigError(field, value, _DURATION_ALLOWED)
        try:
            result = timedelta(seconds=value)
        except OverflowError:
            raise ConfigError(field, value, _DURATION_ALLOWED) from None
    elif isinstance(value, str):
        ns = _parse_duration_string(value.strip())
        if ns is None:
            raise ConfigError(field, value, _DURATION_ALLOWED)
        if ns > _MAX_NS:
            raise ConfigError(field, value, _DURATION_ALLOWED)
        result = from_nanoseconds(ns)
    else:
        raise ConfigError(field, value, _DURATION_ALLOWED)
    if result < timedelta(0) or to_nanoseconds(result) > _MAX_NS:
        raise ConfigError(field, value, _DURATION_ALLOWED)
    return result


def _fraction(value: int, precision: int) -> tuple[int, str]:
    """Split ``value`` into whole units of 10**precision and Go's ``.frac`` text."""
    whole, frac = divmod(value, 10**precision)
    if frac == 0:
        return whole, ""
    return whole, "." + str(frac).rjust(precision, "0").rstrip("0")


def format_duration(td: timedelta) -> str:
    """``td`` as Go's ``time.Duration.String`` prints it.

    ``"0s"``, ``"250µs"``, ``"500ms"``, ``"1.5s"``, ``"1m30s"``, ``"1h0m5s"``.
    The result parses back to ``td`` with ``parse_duration`` (for
    ``td >= 0``).
    """
    ns = to_nanoseconds(td)
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns == 0:
        return "0s"
    if ns < _NS_PER_S:
        if ns < _NS_PER_US:
            unit, precision = "ns", 0
        elif ns < 1_000_000:
            unit, precision = "µs", 3
        else:
            unit, precision = "ms", 6
        whole, frac = _fraction(ns, precision)
        return f"{sign}{whole}{frac}{unit}"
    seconds, frac = _fraction(ns, 9)
    text = f"{seconds % 60}{frac}s"
    minutes = seconds // 60
    if minutes:
        text = f"{minutes % 60}m{text}"
        hours = minutes // 60
        if hours:
            text = f"{hours}h{text}"
    return sign + text


def to_nanoseconds(td: timedelta) -> int:
    """``td`` in whole nanoseconds, exactly (the Engine API's duration unit)."""
    return ((td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds) * _NS_PER_US


def from_nanoseconds(ns: int) -> timedelta:
    """A timedelta from nanoseconds; sub-microsecond parts are rounded down."""
    if isinstance(ns, bool) or not isinstance(ns, int):
        raise ConfigError("nanoseconds", ns, "an integer number of nanoseconds")
    return timedelta(microseconds=ns // _NS_PER_US)


# -- update / rollback config -------------------------------------------------

_DEFAULT_PARALLELISM = 1
_DEFAULT_DELAY = timedelta(0)
_DEFAULT_MONITOR = timedelta(seconds=5)
_DEFAULT_RATIO = 0.0
_FIELDS = ("parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order")
_FIELDS_ALLOWED = "one of: " + ", ".join(_FIELDS)
_PARALLELISM_ALLOWED = "an integer >= 0 (0 = all tasks at once)"
_RATIO_ALLOWED = "a number between 0 and 1"
_DIGITS = re.compile(r"\d+")


def _choice(
    field: str, value: object, enum_type: type[enum.Enum], allowed: tuple[enum.Enum, ...]
) -> Any:
    """An enum member from itself or its value, case-insensitive, ``_`` for ``-``."""
    member: enum.Enum | None = None
    if isinstance(value, enum_type):
        member = value
    elif isinstance(value, str):
        wanted = value.strip().lower().replace("_", "-")
        member = next((m for m in enum_type if m.value == wanted), None)
    if member is None or member not in allowed:
        raise ConfigError(field, value, "one of: " + ", ".join(str(m.value) for m in allowed))
    return member


def _parallelism(value: object) -> int:
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError("parallelism", value, _PARALLELISM_ALLOWED)
    return value


def _ratio(value: object) -> float:
    ratio: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        ratio = float(value)
    elif isinstance(value, str):
        try:
            ratio = float(value.strip())
        except ValueError:
            ratio = None
    if ratio is None or not math.isfinite(ratio) or not 0.0 <= ratio <= 1.0:
        raise ConfigError("max_failure_ratio", value, _RATIO_ALLOWED)
    return ratio


@dataclass(frozen=True)
class _SwarmUpdateSettings:
    """The six settings shared by ``UpdateConfig`` and ``RollbackConfig``.

    Construction coerces: durations from anything ``parse_duration``
    takes, enums from their string values (case-insensitive, ``start_first``
    also works), the ratio from a number or numeric string. Invalid values
    raise ``ConfigError`` naming the field.
    """

    _SECTION: ClassVar[str] = "update_config"
    _FAILURE_ACTIONS: ClassVar[tuple[FailureAction, ...]] = tuple(FailureAction)

    parallelism: int = _DEFAULT_PARALLELISM
    """How many tasks are replaced at once; 0 replaces every task at once."""

    delay: timedelta = _DEFAULT_DELAY
    """How long each worker waits after replacing a task before taking the next."""

    failure_action: FailureAction = FailureAction.PAUSE
    """What Swarm does once the failure ratio is exceeded."""

    monitor: timedelta = _DEFAULT_MONITOR
    """How long after it started a new task's failure still counts as a failure
    of the update. 0 means Swarm's default, 5s (the engine drops a zero
    monitor and swarmkit then uses its default), so it is stored as 5s."""

    max_failure_ratio: float = _DEFAULT_RATIO
    """The fraction of updated tasks allowed to fail before the failure action
    fires (it fires when ``failures / tasks > max_failure_ratio``)."""

    order: Order = Order.STOP_FIRST
    """Stop the old task before starting the new one, or the other way round."""

    if TYPE_CHECKING:
        # What the constructor accepts; the attributes hold the coerced types.
        def __init__(
            self,
            parallelism: int | str = ...,
            delay: DurationLike = ...,
            failure_action: FailureAction | str = ...,
            monitor: DurationLike = ...,
            max_failure_ratio: float | str = ...,
            order: Order | str = ...,
        ) -> None: ...

    def __post_init__(self) -> None:
        values = {
            "parallelism": _parallelism(self.parallelism),
            "delay": parse_duration(self.delay, "delay"),
            "failure_action": _choice(
                "failure_action", self.failure_action, FailureAction, self._FAILURE_ACTIONS
            ),
            "monitor": parse_duration(self.monitor, "monitor") or _DEFAULT_MONITOR,
            "max_failure_ratio": _ratio(self.max_failure_ratio),
            "order": _choice("order", self.order, Order, tuple(Order)),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    # -- Engine API form -------------------------------------------------------

    def to_api(self) -> dict[str, Any]:
        """The Engine API form (``Spec.UpdateConfig``/``Spec.RollbackConfig``),
        durations in nanoseconds, every key present."""
        return {
            "Parallelism": self.parallelism,
            "Delay": to_nanoseconds(self.delay),
            "FailureAction": self.failure_action.value,
            "Monitor": to_nanoseconds(self.monitor),
            "MaxFailureRatio": self.max_failure_ratio,
            "Order": self.order.value,
        }

    @classmethod
    def _api_failure_action(cls, value: Any) -> Any:
        """The failure action an Engine API value means (hook for subclasses)."""
        return value

    @classmethod
    def from_api(cls, data: Mapping[str, Any] | None) -> Self:
        """From the Engine API form, as ``docker service inspect`` returns it.

        ``None`` (the service has no such config) means Swarm's defaults.
        Otherwise a missing key is a zero the engine left out: Parallelism
        0 (all at once), Delay 0, MaxFailureRatio 0; FailureAction and Order
        missing are ``pause`` and ``stop-first``; Monitor missing or 0 is
        Swarm's default, 5s. Unknown keys are ignored.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(cls._SECTION, data, "a mapping in Engine API form")

        def ns(key: str, field: str) -> timedelta:
            value = data.get(key)
            if value is None:
                return timedelta(0)
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(field, value, "a duration in nanoseconds (an integer >= 0)")
            return from_nanoseconds(value)

        parallelism = data.get("Parallelism")
        ratio = data.get("MaxFailureRatio")
        action = data.get("FailureAction")
        order = data.get("Order")
        return cls(
            parallelism=0 if parallelism is None else parallelism,
            delay=ns("Delay", "delay"),
            failure_action=(
                FailureAction.PAUSE if action is None else cls._api_failure_action(action)
            ),
            monitor=ns("Monitor", "monitor"),
            max_failure_ratio=_DEFAULT_RATIO if ratio is None else ratio,
            order=Order.STOP_FIRST if order is None else order,
        )

    # -- compose form ----------------------------------------------------------

    def to_compose(self) -> dict[str, Any]:
        """The compose file form (``deploy.update_config``), every key present,
        durations as Go strings."""
        return {
            "parallelism": self.parallelism,
            "delay": format_duration(self.delay),
            "failure_action": self.failure_action.value,
            "monitor": format_duration(self.monitor),
            "max_failure_ratio": self.max_failure_ratio,
            "order": self.order.value,
        }

    @classmethod
    def from_compose(cls, data: Mapping[str, Any] | None, section: str | None = None) -> Self:
        """From a compose file's ``deploy.update_config`` / ``rollback_config``.

        Missing (or null) keys take Swarm's defaults; unknown keys are an
        error. Errors name the field under ``section`` (by default
        ``update_config`` or ``rollback_config``), e.g. ``update_config.delay``.
        """
        section = cls._SECTION if section is None else section
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(section, data, "a mapping of " + ", ".join(_FIELDS))
        for key, value in data.items():
            if key not in _FIELDS:
                raise ConfigError(f"{section}.{key}", value, _FIELDS_ALLOWED)
        given = {key: value for key, value in data.items() if value is not None}
        try:
            return cls(**given)
        except ConfigError as exc:
            raise ConfigError(f"{section}.{exc.field}", exc.value, exc.allowed) from exc

    # -- helpers ---------------------------------------------------------------

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied, validated like a new config."""
        for key, value in changes.items():
            if key not in _FIELDS:
                raise ConfigError(key, value, _FIELDS_ALLOWED)
        return dataclasses.replace(self, **changes)

    def effective_parallelism(self, replicas: int) -> int:
        """How many of ``replicas`` tasks are replaced at once (0 means all)."""
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise ConfigError("replicas", replicas, "an integer >= 0")
        if self.parallelism == 0:
            return replicas
        return min(self.parallelism, replicas)


@dataclass(frozen=True, init=False)
class UpdateConfig(_SwarmUpdateSettings):
    """Swarm's ``update_config``: how a service update rolls out.

    Defaults are Swarm's: ``UpdateConfig()`` is what ``docker service create``
    gives a service. Fields: ``parallelism``, ``delay``, ``failure_action``
    (``continue``, ``pause``, ``rollback``), ``monitor``,
    ``max_failure_ratio``, ``order``.
    """

    _SECTION: ClassVar[str] = "update_config"
    _FAILURE_ACTIONS: ClassVar[tuple[FailureAction, ...]] = tuple(FailureAction)

    @classmethod
    def from_kubernetes(
        cls,
        max_surge: int | str = "25%",
        max_unavailable: int | str = "25%",
        replicas: int | None = None,
        **settings: Any,
    ) -> KubernetesMapping:
        """A Deployment's ``strategy.rollingUpdate`` as Swarm's order and parallelism.

        ``max_surge`` and ``max_unavailable`` are what Kubernetes accepts (an
        integer or ``"N%"``, default ``"25%"`` each, as Kubernetes'); a
        percentage needs ``replicas``. Rounding is Kubernetes' own: surge
        up, unavailable down, and unavailable 1 when both come out 0.
        Surge only: ``start-first`` with parallelism = surge; unavailable
        only: ``stop-first`` with parallelism = unavailable; both: see
        ``KubernetesMapping``. Both given as 0 is refused, as Kubernetes
        refuses it. ``settings`` are the other ``UpdateConfig`` fields.

        Returns the config and the warnings about what Swarm cannot express.
        """
        surge, unavailable = _kubernetes_fenceposts(max_surge, max_unavailable, replicas)
        for key in ("parallelism", "order"):
            if key in settings:
                raise ConfigError(key, settings[key], "not with from_kubernetes (it sets it)")
        warnings: list[LintWarning] = []
        if unavailable == 0:
            order, parallelism = Order.START_FIRST, surge
        elif surge == 0:
            order, parallelism = Order.STOP_FIRST, unavailable
        else:
            order, parallelism = Order.START_FIRST, surge
            warnings.append(
                LintWarning(
                    "surge-and-unavailable",
                    f"Swarm cannot add and remove tasks in one step: max_surge {surge} and "
                    f"max_unavailable {unavailable} become start-first with parallelism {surge}, "
                    f"so no task is unavailable and the update replaces {surge} at a time, "
                    f"slower than Kubernetes would. Set max_unavailable to 0 to say so.",
                )
            )
        return KubernetesMapping(cls(parallelism=parallelism, order=order, **settings), warnings)


@dataclass(frozen=True, init=False)
class RollbackConfig(_SwarmUpdateSettings):
    """Swarm's ``rollback_config``: how a rollback rolls out.

    The same fields and defaults as ``UpdateConfig``, but
    ``failure_action`` is only ``continue`` or ``pause``: a rollback is never
    rolled back.
    """

    _SECTION: ClassVar[str] = "rollback_config"
    _FAILURE_ACTIONS: ClassVar[tuple[FailureAction, ...]] = (
        FailureAction.CONTINUE,
        FailureAction.PAUSE,
    )

    @classmethod
    def _api_failure_action(cls, value: Any) -> Any:
        # The engine stores "rollback" here if asked to; swarmkit then pauses
        # ("never roll back a rollback"), so that is what it means.
        if isinstance(value, str) and value.strip().lower() == FailureAction.ROLLBACK.value:
            return FailureAction.PAUSE
        return value


def configs_from_compose(service: Mapping[str, Any]) -> tuple[UpdateConfig, RollbackConfig]:
    """The update and rollback configs of one compose service entry.

    Reads ``deploy.update_config`` and ``deploy.rollback_config``; what is
    missing takes Swarm's defaults.
    """
    if not isinstance(service, Mapping):
        raise ConfigError("service", service, "a mapping (a compose service entry)")
    deploy = service.get("deploy")
    if deploy is None:
        return UpdateConfig(), RollbackConfig()
    if not isinstance(deploy, Mapping):
        raise ConfigError("deploy", deploy, "a mapping")
    return (
        UpdateConfig.from_compose(deploy.get("update_config")),
        RollbackConfig.from_compose(deploy.get("rollback_config")),
    )


# -- Kubernetes rolling update ----------------------------------------------------

_K8S_ALLOWED = "an integer >= 0 or a percentage such as '25%', as Kubernetes accepts"
_K8S_PERCENT = re.compile(r"(\d+)%")


def _kubernetes_value(field: str, value: object, replicas: int | None, round_up: bool) -> int:
    """One of ``maxSurge``/``maxUnavailable`` as a task count, rounded as Kubernetes'
    ``intstr.GetScaledValueFromIntOrPercent`` does (``math.Ceil``/``math.Floor``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(field, value, _K8S_ALLOWED)
        return value
    text = value.strip() if isinstance(value, str) else None
    if text is not None and text.isdigit():
        return int(text)
    match = _K8S_PERCENT.fullmatch(text) if text is not None else None
    if match is None:
        raise ConfigError(field, value, _K8S_ALLOWED)
    percent = int(match.group(1))
    if field == "max_unavailable" and percent > 100:
        raise ConfigError(field, value, "a percentage <= 100% (Kubernetes refuses more)")
    if replicas is None:
        raise ConfigError(field, value, "an integer, or a percentage with replicas= given")
    scaled = percent * replicas
    return -(-scaled // 100) if round_up else scaled // 100


def _is_zero(value: object) -> bool:
    return isinstance(value, int | str) and str(value).strip() in ("0", "0%")


def _kubernetes_fenceposts(
    max_surge: object, max_unavailable: object, replicas: int | None
) -> tuple[int, int]:
    """Kubernetes' ``deploymentutil.ResolveFenceposts``: surge rounded up,
    unavailable down, and "If both fenceposts resolve to zero, then we
    should set maxUnavailable to 1" (pkg/controller/deployment/util)."""
    if replicas is not None and (
        isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0
    ):
        raise ConfigError("replicas", replicas, "an integer >= 0")
    if _is_zero(max_surge) and _is_zero(max_unavailable):
        raise ConfigError(
            "max_unavailable",
            max_unavailable,
            "more than 0 when max_surge is 0 (Kubernetes refuses both 0: nothing could move)",
        )
    surge = _kubernetes_value("max_surge", max_surge, replicas, round_up=True)
    unavailable = _kubernetes_value("max_unavailable", max_unavailable, replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


# -- lint -----------------------------------------------------------------------


@dataclass(frozen=True)
class LintWarning:
    """A known trap in an update config: a stable ``code`` and a plain message."""

    code: str
    """Stable identifier, e.g. ``"delay-ge-monitor"``."""

    message: str
    """One or two sentences: the risk and the fix."""

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class KubernetesMapping(NamedTuple):
    """What ``UpdateConfig.from_kubernetes`` returns: the config, and what of the
    Kubernetes strategy Swarm cannot express (``"surge-and-unavailable"``:
    Swarm either starts the new task first or stops the old one first, never
    both in one update, so a strategy with both surge and unavailable becomes
    ``start-first`` with parallelism = surge: fewer tasks move at once, none
    is ever missing)."""

    config: UpdateConfig
    warnings: list[LintWarning]


def lint(
    update: UpdateConfig | RollbackConfig,
    *,
    has_healthcheck: bool | None = None,
    host_mode_ports: bool = False,
    healthcheck_interval: timedelta | None = None,
    healthcheck_retries: int | None = None,
    healthcheck_start_period: timedelta | None = None,
) -> list[LintWarning]:
    """Known traps in ``update`` for a service; warns, never raises.

    ``has_healthcheck`` None means unknown. The healthcheck timing check
    runs when the interval and retries are known (start period defaults
    to 0).
    """
    warnings: list[LintWarning] = []
    delay, monitor = format_duration(update.delay), format_duration(update.monitor)
    if update.delay >= update.monitor:
        warnings.append(
            LintWarning(
                "delay-ge-monitor",
                f"delay ({delay}) is not shorter than monitor ({monitor}): Swarm counts a task's "
                f"failure only within monitor of its start, so a task failing later in its batch's "
                f"delay is missed. Set monitor longer than delay, e.g. monitor: "
                f"{format_duration(update.delay + timedelta(seconds=5))}.",
            )
        )
    if update.order is Order.START_FIRST and host_mode_ports:
        warnings.append(
            LintWarning(
                "start-first-host-ports",
                "order start-first with ports published in host mode: the new task cannot bind the "
                "port while the old one still holds it on the same node. Use order stop-first, or "
                "publish the ports in ingress mode.",
            )
        )
    if has_healthcheck is False:
        warnings.append(
            LintWarning(
                "no-healthcheck",
                "the service has no healthcheck, so Swarm cannot tell a started task from a ready "
                "one and never sees an unhealthy task. Add a healthcheck to the image or service.",
            )
        )
    if (
        has_healthcheck is not False
        and healthcheck_interval is not None
        and healthcheck_retries is not None
    ):
        start_period = healthcheck_start_period or timedelta(0)
        needed = start_period + healthcheck_interval * max(healthcheck_retries, 0)
        if update.monitor < needed:
            warnings.append(
                LintWarning(
                    "monitor-shorter-than-healthcheck",
                    f"monitor ({monitor}) is shorter than the time the healthcheck needs to report "
                    f"a task unhealthy ({format_duration(needed)} = start period + interval x "
                    f"retries), so a task can fail its healthcheck after Swarm stopped watching. "
                    f"Set monitor to at least {format_duration(needed)}.",
                )
            )
    if update.parallelism == 0 and update.failure_action is FailureAction.CONTINUE:
        warnings.append(
            LintWarning(
                "parallelism-0-continue",
                "parallelism 0 with failure_action continue: a bad image replaces every task at "
                "once and nothing stops it. Set parallelism to 1 or more, or failure_action to "
                "pause or rollback.",
            )
        )
    return warnings


#: The update delay with which a canary holds Swarm's updater between two
#: steps (zdd_swarm/canary/driver.py). A previous spec with a delay this long
#: is a canary step's: rolling back to it would replace no task.
CANARY_HOLD = timedelta(days=1)

#: A task's start, as the engine's updater waits for it in each batch (pull,
#: create, start, first healthcheck): what ``expected_seconds`` allows when it
#: knows nothing better.
TASK_START_ALLOWANCE = timedelta(seconds=10)

AUTO: Final = "auto"
"""A deadline that scales with the config (``timeout``, ``rollback_timeout``):
three times the expected duration, and never less than the fixed default."""

Auto: TypeAlias = Literal["auto"]


def expected_seconds(
    config: UpdateConfig | RollbackConfig,
    slots: int,
    task_start: timedelta = TASK_START_ALLOWANCE,
) -> float:
    """How long Swarm's updater takes to replace ``slots`` with ``config``.

    swarmkit ``manager/orchestrator/update/updater.go``: each worker replaces
    one slot, waits for its task to run, then "if updateConfig.Delay != 0"
    sleeps the delay; ``parallelism`` workers (all slots when 0); after the
    last slot "Keep watching for task failures for one more
    monitoringPeriod", which is ``Delay + 1s`` when "updateConfig.Delay >=
    monitoringPeriod".
    """
    if slots <= 0:
        return 0.0
    parallelism = config.effective_parallelism(slots) or slots
    batches = math.ceil(slots / parallelism)
    delay, monitor = config.delay.total_seconds(), config.monitor.total_seconds()
    final = delay + 1 if delay >= monitor else monitor
    return round(batches * (task_start.total_seconds() + delay) + final, 1)


def _duration(name: str, value: object, allow_none: bool = True) -> timedelta | None:
    if value is None:
        if allow_none:
            return None
        raise ConfigError(name, value, "a duration")
    if value == AUTO:
        return AUTO  # type: ignore[return-value]  # resolved by tracker_settings
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
    timeout: timedelta | Auto | None = AUTO
    """The whole update, rollback excluded. ``"auto"``: three times the expected duration
    (``expected_seconds``), at least 30 minutes."""
    rollback_timeout: timedelta | Auto = AUTO
    """A rollback that has not finished after this long failed. ``"auto"``: three times the
    rollback's expected duration, at least 5 minutes."""
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
            timeout: DurationLike | Auto | None = ...,
            rollback_timeout: DurationLike | Auto = ...,
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
        set_(self, "gates", as_gates(self.gates))

    def deadline(self, name: Literal["timeout", "rollback_timeout"], expected: float) -> timedelta:
        """``timeout`` or ``rollback_timeout`` for a rollout expected to take
        ``expected`` seconds (``AUTO`` resolved)."""
        value = getattr(self, name)
        if value != AUTO:
            return value  # type: ignore[no-any-return]
        return max(AUTO_MINIMUM[name], timedelta(seconds=AUTO_FACTOR * expected))

    def deadline_warnings(self, expected: float, rollback_expected: float) -> list[str]:
        """Deadlines set shorter than the config can meet."""
        warnings = []
        for name, seconds in (("timeout", expected), ("rollback_timeout", rollback_expected)):
            value = getattr(self, name)
            if isinstance(value, timedelta) and value.total_seconds() < seconds:
                warnings.append(
                    f"{name}_too_short: {name} {format_duration(value)} is shorter than the "
                    f"{seconds:g}s the engine is expected to take with this config"
                )
        return warnings

    def tracker_settings(
        self, expected: float = 0.0, rollback_expected: float = 0.0
    ) -> TrackerSettings:
        """The tracker's settings for a rollout expected to take ``expected``
        seconds (its rollback ``rollback_expected``)."""
        timeout = None if self.timeout is None else self.deadline("timeout", expected)
        return TrackerSettings(
            failure_action=self.failure_action,
            task_deadline=self.task_deadline,
            progress_deadline=self.progress_deadline,
            timeout=timeout,
            rollback_timeout=self.deadline("rollback_timeout", rollback_expected),
            gate_names=tuple(g.name for g in self.gates),
            gate_min_ratio={g.name: g.min_success_ratio for g in self.gates},
        )


#: ``AUTO`` deadlines: a multiple of the expected duration, and a floor.
AUTO_FACTOR = 3.0
AUTO_MINIMUM = {"timeout": timedelta(minutes=30), "rollback_timeout": timedelta(minutes=5)}


@dataclass(frozen=True)
class TrackerSettings:
    """The knobs the tracker needs, from ``RolloutOptions.tracker_settings()``
    (which holds the defaults)."""

    failure_action: FailureAction
    task_deadline: timedelta | None
    progress_deadline: timedelta | None
    timeout: timedelta | None
    rollback_timeout: timedelta
    gate_names: tuple[str, ...]
    gate_min_ratio: Mapping[str, float]
