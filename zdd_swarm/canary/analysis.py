"""Analysis: metric checks that decide whether a canary goes on, as a state
machine in injected time.

A ``Metric`` is measured by a provider every ``interval``; each measurement
is judged by the metric's conditions, and the counts decide the metric's
phase. The rules are Argo Rollouts' (``analysis/analysis.go``,
``assessMetricStatus``), quoted where they are applied below:

- a measurement is *successful* when ``success_condition`` holds, *failed*
  when ``failure_condition`` holds (it wins over success), *inconclusive*
  when both are given and neither holds, or when none is given; without a
  failure condition a success condition that does not hold fails; a
  provider error, or a condition that cannot be evaluated on the value, is
  an *error*, never a pass;
- the metric fails once failed > ``failure_limit``, is inconclusive once
  inconclusive > ``inconclusive_limit``, errs once consecutive errors >
  ``consecutive_error_limit`` (default 4), and succeeds once ``count``
  measurements are taken (errors do not count);
- ``consecutive_successes`` (ours, after Argo's ``consecutiveSuccessLimit``):
  the metric succeeds as soon as that many measurements in a row succeed;
  reaching ``count`` without them is inconclusive, a person decides;
- a ``dry_run`` metric is measured and recorded but never decides.

The run's phase is the worst of its deciding metrics (Argo's order:
successful < inconclusive < error < failed); it ends as soon as one of
them fails or errs. ``AnalysisRun`` is pure: ``due`` says what to measure,
``record`` takes the result. ``run_analysis`` is the loop that measures
through the providers and sleeps on the injected clock.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from .._logging import get_logger
from ..config import DurationLike, parse_duration
from ..errors import ConfigError, MetricQueryError
from .conditions import Condition, EvaluationError

if TYPE_CHECKING:
    from ..clock import Clock

__all__ = [
    "AnalysisResult",
    "AnalysisRun",
    "Measurement",
    "MeasurementFailed",
    "Metric",
    "MetricProvider",
    "MetricResult",
    "Phase",
    "QueryContext",
    "analysis_summary",
    "check_metrics",
    "judge",
    "measure",
    "measure_due",
    "metric_summary",
    "run_analysis",
]

log = get_logger()

#: Argo's ``DefaultConsecutiveErrorLimit`` ("the default number times a metric
#: can error in sequence before erroring the entire metric") and
#: ``DefaultErrorRetryInterval`` (to retry a measurement upon error when the
#: metric has no interval).
DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4
ERROR_RETRY_INTERVAL = timedelta(seconds=10)


class Phase(enum.StrEnum):
    """The phase of a measurement, a metric or a whole analysis."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESSFUL = "successful"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"
    FAILED = "failed"

    @property
    def completed(self) -> bool:
        return self not in (Phase.PENDING, Phase.RUNNING)

    def worse_than(self, other: Phase) -> bool:
        order = list(Phase)
        return order.index(self) > order.index(other)


@dataclass(frozen=True)
class QueryContext:
    """What a query may name: ``{service}``, ``{old_image}``, ``{new_image}``,
    and the images' tags ``{old_tag}``, ``{new_tag}`` (what an app commonly
    puts in a ``version`` label of its own metrics)."""

    service: str
    old_image: str = ""
    new_image: str = ""

    def values(self) -> dict[str, str]:
        return {
            "service": self.service,
            "old_image": self.old_image,
            "new_image": self.new_image,
            "old_tag": image_tag(self.old_image),
            "new_tag": image_tag(self.new_image),
        }


def image_tag(image: str) -> str:
    """The tag of an image reference (``registry:5000/web:2@sha256:...`` ->
    ``2``), empty without one: a ``:`` after the last ``/`` (a registry's
    port comes before it), before any digest."""
    name = image.partition("@")[0]
    last = name.rpartition("/")[2]
    return last.rpartition(":")[2] if ":" in last else ""


class MeasurementFailed(Exception):
    """A provider could not take a measurement (unreachable, refused, bad
    answer): the measurement is an error."""


class MetricProvider(Protocol):
    """Where a metric's value comes from (``PrometheusProvider``, ``WebProvider``)."""

    def measure(self, context: QueryContext) -> Any:
        """The value now; raises ``MeasurementFailed`` when there is none
        (provider unreachable, query refused, an answer it cannot read)."""
        ...


def _count(field_name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(field_name, value, f"an integer >= {low}")
    return value


@dataclass(frozen=True)
class Metric:
    """One check of an analysis; durations take ``"30s"``-like strings."""

    name: str
    provider: MetricProvider = field(compare=False)
    success_condition: Condition | None = None
    failure_condition: Condition | None = None
    interval: timedelta | None = None
    """Between measurements; without it, one measurement (``count`` 1)."""
    count: int | None = None
    """Measurements to take; required with ``interval`` unless
    ``consecutive_successes`` ends the metric."""
    failure_limit: int = 0
    inconclusive_limit: int = 0
    consecutive_error_limit: int = DEFAULT_CONSECUTIVE_ERROR_LIMIT
    consecutive_successes: int = 0
    initial_delay: timedelta = timedelta(0)
    dry_run: bool = False

    if TYPE_CHECKING:

        def __init__(
            self,
            name: str,
            provider: MetricProvider,
            success_condition: Condition | str | None = ...,
            failure_condition: Condition | str | None = ...,
            interval: DurationLike | None = ...,
            count: int | None = ...,
            failure_limit: int = ...,
            inconclusive_limit: int = ...,
            consecutive_error_limit: int = ...,
            consecutive_successes: int = ...,
            initial_delay: DurationLike = ...,
            dry_run: bool = ...,
        ) -> None: ...

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        prefix = f"metrics.{self.name}"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("metrics.name", self.name, "a non-empty name")
        for name in ("success_condition", "failure_condition"):
            value = getattr(self, name)
            if isinstance(value, str):
                set_(self, name, Condition(value, f"{prefix}.{name}"))
        if self.interval is not None:
            interval = parse_duration(self.interval, f"{prefix}.interval")
            if interval <= timedelta(0):
                raise ConfigError(f"{prefix}.interval", self.interval, "a duration > 0")
            set_(self, "interval", interval)
        set_(self, "initial_delay", parse_duration(self.initial_delay, f"{prefix}.initial_delay"))
        if self.count is not None:
            _count(f"{prefix}.count", self.count, 1)
        for name in ("failure_limit", "inconclusive_limit", "consecutive_error_limit"):
            _count(f"{prefix}.{name}", getattr(self, name), 0)
        _count(f"{prefix}.consecutive_successes", self.consecutive_successes, 0)
        if self.interval is not None and self.count is None and not self.consecutive_successes:
            raise ConfigError(
                f"{prefix}.count", None, "a count (or consecutive_successes) with an interval"
            )

    @property
    def effective_count(self) -> int | None:
        """Argo's ``EffectiveCount``: one measurement when there is no interval."""
        if self.count is None and self.interval is None:
            return 1
        return self.count


@dataclass(frozen=True)
class Measurement:
    """One measurement: its phase, the value measured and what was judged."""

    phase: Phase
    at: float
    value: Any = None
    message: str = ""


def judge(metric: Metric, value: Any) -> tuple[Phase, str]:
    """A measured value's phase under ``metric``'s conditions, and why."""
    success, failure = metric.success_condition, metric.failure_condition
    shown = _show(value)
    try:
        if failure is not None and failure.evaluate(value):
            return Phase.FAILED, f"{shown}: failure condition {failure} holds"
        if success is not None:
            if success.evaluate(value):
                return Phase.SUCCESSFUL, f"{shown}: {success}"
            if failure is None:
                return Phase.FAILED, f"{shown}: success condition {success} does not hold"
            return Phase.INCONCLUSIVE, f"{shown}: neither {success} nor {failure}"
        if failure is not None:
            return Phase.SUCCESSFUL, f"{shown}: not {failure}"
    except EvaluationError as exc:
        return Phase.ERROR, f"{shown}: {exc}"
    return Phase.INCONCLUSIVE, f"{shown}: no condition to judge it by"


def _show(value: Any) -> str:
    if isinstance(value, float) and not math.isnan(value):
        return f"value {value:g}"
    if isinstance(value, list) and all(isinstance(v, float) for v in value):
        return "value [" + ", ".join(f"{v:g}" for v in value) + "]"
    return f"value {value!r}"


# -- the state machine ---------------------------------------------------------


@dataclass(frozen=True)
class MetricResult:
    """Where one metric stands: its phase, counts and measurements."""

    name: str
    phase: Phase
    dry_run: bool
    successful: int
    failed: int
    inconclusive: int
    error: int
    measurements: tuple[Measurement, ...]
    message: str = ""

    @property
    def value(self) -> Any:
        """The last value measured (None if none was)."""
        return self.measurements[-1].value if self.measurements else None


@dataclass
class _MetricState:
    metric: Metric
    started_at: float
    measurements: list[Measurement] = field(default_factory=list)
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_error: int = 0
    consecutive_success: int = 0
    phase: Phase = Phase.PENDING
    message: str = ""

    def next_at(self) -> float | None:
        if self.phase.completed:
            return None
        if not self.measurements:
            return self.started_at + self.metric.initial_delay.total_seconds()
        last = self.measurements[-1]
        # analysis.go: "metric.Interval can be null because we may be
        # retrying a metric due to error"; then DefaultErrorRetryInterval
        interval = self.metric.interval or ERROR_RETRY_INTERVAL
        return last.at + interval.total_seconds()

    def record(self, measurement: Measurement) -> None:
        # analysis.go, runMeasurements: Successful, Failed and Inconclusive
        # each do "metricResult.Count++" and "ConsecutiveError = 0"; Error
        # does "metricResult.Error++" and "metricResult.ConsecutiveError++".
        self.measurements.append(measurement)
        phase = measurement.phase
        if phase is Phase.ERROR:
            self.error += 1
            self.consecutive_error += 1
        else:
            self.consecutive_error = 0
            self.successful += phase is Phase.SUCCESSFUL
            self.failed += phase is Phase.FAILED
            self.inconclusive += phase is Phase.INCONCLUSIVE
        self.consecutive_success = self.consecutive_success + 1 if phase is Phase.SUCCESSFUL else 0
        self.phase, why = self._assess()
        self.message = f"{why}; last: {measurement.message}" if why else measurement.message

    def _assess(self) -> tuple[Phase, str]:
        metric = self.metric
        # analysis.go, assessMetricStatus, in this order:
        # "if result.Failed > metric.FailureLimit" -> Failed
        if self.failed > metric.failure_limit:
            return Phase.FAILED, f"failed ({self.failed}) > failure_limit ({metric.failure_limit})"
        # "if result.Inconclusive > metric.InconclusiveLimit" -> Inconclusive
        if self.inconclusive > metric.inconclusive_limit:
            return Phase.INCONCLUSIVE, (
                f"inconclusive ({self.inconclusive}) > "
                f"inconclusive_limit ({metric.inconclusive_limit})"
            )
        # "if result.ConsecutiveError > consecutiveErrorLimit" -> Error
        if self.consecutive_error > metric.consecutive_error_limit:
            return Phase.ERROR, (
                f"consecutive errors ({self.consecutive_error}) > "
                f"consecutive_error_limit ({metric.consecutive_error_limit})"
            )
        wanted = metric.consecutive_successes
        if wanted and self.consecutive_success >= wanted:
            return Phase.SUCCESSFUL, f"{wanted} successful measurements in a row"
        # "If a count was specified, and we reached that count, then metric is
        # considered Successful."
        count = metric.effective_count
        taken = self.successful + self.failed + self.inconclusive
        if count is not None and taken >= count:
            if wanted:
                return Phase.INCONCLUSIVE, f"count ({count}) reached without {wanted} in a row"
            return Phase.SUCCESSFUL, f"count ({count}) reached"
        return Phase.RUNNING, ""

    def result(self) -> MetricResult:
        return MetricResult(
            self.metric.name,
            self.phase,
            self.metric.dry_run,
            self.successful,
            self.failed,
            self.inconclusive,
            self.error,
            tuple(self.measurements),
            self.message,
        )


@dataclass(frozen=True)
class AnalysisResult:
    """How an analysis ended: its phase, why, and every metric's result."""

    phase: Phase
    message: str
    metrics: tuple[MetricResult, ...]

    def __bool__(self) -> bool:
        """True only when the analysis passed."""
        return self.phase is Phase.SUCCESSFUL


class AnalysisRun:
    """The state of one analysis: which metrics are due, what was measured,
    and the phase that follows. No I/O and no clock: times are given."""

    def __init__(self, metrics: Sequence[Metric], started_at: float) -> None:
        names = [m.name for m in metrics]
        if not metrics or len(set(names)) != len(names):
            raise ConfigError("metrics", names, "at least one metric, each with its own name")
        self._states = {m.name: _MetricState(m, started_at) for m in metrics}

    def due(self, now: float) -> list[Metric]:
        """The metrics to measure at ``now`` (none once the run is over)."""
        if self.phase.completed:
            return []
        due = [(s, s.next_at()) for s in self._states.values()]
        return [s.metric for s, at in due if at is not None and at <= now]

    def next_at(self) -> float | None:
        """When the next measurement is due; None once the run is over."""
        if self.phase.completed:
            return None
        times = [t for t in (s.next_at() for s in self._states.values()) if t is not None]
        return min(times) if times else None

    def record(self, name: str, measurement: Measurement) -> None:
        self._states[name].record(measurement)

    @property
    def phase(self) -> Phase:
        deciding = [s for s in self._states.values() if not s.metric.dry_run]
        worst = self._worst(deciding)
        if worst is not None and worst.phase in (Phase.FAILED, Phase.ERROR):
            return worst.phase  # no need to wait for the others
        if not all(s.phase.completed for s in self._states.values()):
            return Phase.RUNNING if any(s.measurements for s in deciding) else Phase.PENDING
        return worst.phase if worst is not None else Phase.SUCCESSFUL

    @staticmethod
    def _worst(states: Sequence[_MetricState]) -> _MetricState | None:
        worst: _MetricState | None = None
        for state in states:
            if state.phase.completed and (worst is None or state.phase.worse_than(worst.phase)):
                worst = state
        return worst

    def result(self) -> AnalysisResult:
        phase = self.phase
        deciding = [s for s in self._states.values() if not s.metric.dry_run]
        worst = self._worst(deciding)
        if worst is None or not phase.completed:
            message = f"analysis {phase.value}"
        else:
            message = f"metric {worst.metric.name!r} {worst.phase.value}: {worst.message}"
        return AnalysisResult(phase, message, tuple(s.result() for s in self._states.values()))


# -- the loop ------------------------------------------------------------------


def check_metrics(metrics: Sequence[Metric], context: QueryContext) -> None:
    """Measure every metric once before anything is changed: a provider that
    refuses the query or cannot be reached raises ``MetricQueryError`` (an
    ``InputError``). The values are not judged: a canary has no tasks yet."""
    for metric in metrics:
        try:
            metric.provider.measure(context)
        except MeasurementFailed as exc:
            raise MetricQueryError(metric.name, str(exc)) from exc


def measure(metric: Metric, context: QueryContext, clock: Clock) -> Measurement:
    """One measurement of ``metric``, judged; a provider failure is an error."""
    try:
        value = metric.provider.measure(context)
    except MeasurementFailed as exc:
        return Measurement(Phase.ERROR, clock.monotonic(), None, str(exc))
    phase, message = judge(metric, value)
    return Measurement(phase, clock.monotonic(), value, message)


def run_analysis(
    metrics: Sequence[Metric],
    context: QueryContext,
    clock: Clock,
    on_measurement: Callable[[str, Measurement], None] | None = None,
) -> AnalysisResult:
    """Measure ``metrics`` until the analysis is over, sleeping on ``clock``
    between measurements; ``on_measurement`` sees each one."""
    run = AnalysisRun(metrics, clock.monotonic())
    while True:
        measure_due(run, context, clock, on_measurement)
        next_at = run.next_at()
        if next_at is None:
            return run.result()
        clock.sleep(max(0.0, next_at - clock.monotonic()))


def measure_due(
    run: AnalysisRun,
    context: QueryContext,
    clock: Clock,
    on_measurement: Callable[[str, Measurement], None] | None = None,
) -> None:
    """Take the measurements of ``run`` that are due now, and record them: one
    turn of ``run_analysis``, for a caller that interleaves an analysis with
    work of its own (blue-green samples its preview checks between them)."""
    for metric in run.due(clock.monotonic()):
        measurement = measure(metric, context, clock)
        log.info(
            "measurement",
            metric=metric.name,
            phase=measurement.phase.value,
            value=measurement.value,
            message=measurement.message,
            dry_run=metric.dry_run,
        )
        run.record(metric.name, measurement)
        if on_measurement is not None:
            on_measurement(metric.name, measurement)


def analysis_summary(result: AnalysisResult) -> dict[str, Any]:
    """An analysis' result as plain data: its phase, why, and every metric's
    ``metric_summary``."""
    return {
        "phase": result.phase.value,
        "message": result.message,
        "metrics": [metric_summary(m) for m in result.metrics],
    }


def metric_summary(result: MetricResult) -> Mapping[str, Any]:
    """A metric's result as plain data (for JSON output and the rollout's record)."""
    return {
        "name": result.name,
        "phase": result.phase.value,
        "dry_run": result.dry_run,
        "successful": result.successful,
        "failed": result.failed,
        "inconclusive": result.inconclusive,
        "error": result.error,
        "value": result.value,
        "message": result.message,
    }
