"""Analysis as a state machine in simulated time: Argo Rollouts' rules for
count, failure_limit, inconclusive_limit and consecutive errors, ours for
consecutive_successes, dry runs, and a provider that stops answering."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import pytest

from zdd_swarm.canary import analysis as analysis_module
from zdd_swarm.canary.analysis import (
    AnalysisRun,
    Measurement,
    MeasurementFailed,
    Metric,
    Phase,
    QueryContext,
    check_metrics,
    judge,
    metric_summary,
    run_analysis,
)
from zdd_swarm.errors import ConfigError, InputError, MetricQueryError
from zdd_swarm.testing import FakeClock

DOWN = MeasurementFailed("http://127.0.0.1:9/api/v1/query unreachable: ConnectionError")
CONTEXT = QueryContext("web", "app:1", "app:2")


class Script:
    """A provider answering from a list; an exception in it is raised."""

    def __init__(self, values: Iterable[Any]) -> None:
        self.values = list(values)
        self.asked: list[QueryContext] = []

    def measure(self, context: QueryContext) -> Any:
        self.asked.append(context)
        value = self.values.pop(0)
        if isinstance(value, Exception):
            raise value
        return value


def errors(values: Iterable[Any], **kwargs: Any) -> Metric:
    kwargs.setdefault("success_condition", "result[0] < 0.05")
    return Metric("errors", Script(values), **kwargs)


def test_every_name_in_all_exists() -> None:
    for name in analysis_module.__all__:
        assert hasattr(analysis_module, name), name


# -- one measurement -------------------------------------------------------------


@pytest.mark.parametrize(
    ("success", "failure", "value", "phase"),
    [
        ("result < 1", None, 0.5, Phase.SUCCESSFUL),
        ("result < 1", None, 2.0, Phase.FAILED),  # success alone: not met is a failure
        (None, "result > 1", 0.5, Phase.SUCCESSFUL),  # failure alone: not met is a success
        (None, "result > 1", 2.0, Phase.FAILED),
        ("result < 1", "result > 5", 3.0, Phase.INCONCLUSIVE),  # neither
        ("result < 10", "result > 5", 7.0, Phase.FAILED),  # failure wins
        (None, None, 1.0, Phase.INCONCLUSIVE),  # nothing to judge by
        ("result[0] < 1", None, [], Phase.ERROR),  # an empty vector is no pass
    ],
)
def test_judge_follows_argo(
    success: str | None, failure: str | None, value: Any, phase: Phase
) -> None:
    metric = Metric("m", Script([]), success_condition=success, failure_condition=failure)
    assert judge(metric, value)[0] is phase


def test_judgement_quotes_the_value() -> None:
    _, message = judge(errors([]), [0.2])
    assert message == "value [0.2]: success condition result[0] < 0.05 does not hold"


# -- a metric over time ----------------------------------------------------------


def test_a_single_measurement_without_interval() -> None:
    clock = FakeClock()
    result = run_analysis([errors([[0.01]])], CONTEXT, clock)
    assert result.phase is Phase.SUCCESSFUL and bool(result)
    assert clock.slept == 0
    assert result.metrics[0].successful == 1


def test_count_measurements_at_interval_then_success() -> None:
    clock = FakeClock()
    metric = errors([[0.01], [0.02], [0.03]], interval="30s", count=3)
    result = run_analysis([metric], CONTEXT, clock)
    assert result.phase is Phase.SUCCESSFUL
    assert clock.slept == 60
    assert [m.at for m in result.metrics[0].measurements] == [1000, 1030, 1060]
    assert "count (3) reached" in result.message


def test_failure_limit_is_exceeded_not_reached() -> None:
    clock = FakeClock()
    metric = errors([[0.2], [0.01], [0.3], [0.01]], interval="10s", count=4, failure_limit=1)
    result = run_analysis([metric], CONTEXT, clock)
    assert result.phase is Phase.FAILED and not result
    assert result.metrics[0].failed == 2 and len(result.metrics[0].measurements) == 3
    assert result.message == (
        "metric 'errors' failed: failed (2) > failure_limit (1); "
        "last: value [0.3]: success condition result[0] < 0.05 does not hold"
    )


def test_inconclusive_limit() -> None:
    metric = errors(
        [[0.5], [0.01], [0.5]],
        failure_condition="result[0] > 0.9",
        interval="10s",
        count=3,
        inconclusive_limit=1,
    )
    result = run_analysis([metric], CONTEXT, FakeClock())
    assert result.phase is Phase.INCONCLUSIVE
    assert "inconclusive (2) > inconclusive_limit (1)" in result.message


def test_an_unreachable_provider_is_an_error_after_the_limit_never_a_pass() -> None:
    clock = FakeClock()
    metric = errors([[0.01]] + [DOWN] * 5, interval="10s", count=3)
    result = run_analysis([metric], CONTEXT, clock)
    assert result.phase is Phase.ERROR and not result
    # one success, then 5 errors in a row (> the default limit of 4)
    assert (result.metrics[0].successful, result.metrics[0].error) == (1, 5)
    assert "consecutive errors (5) > consecutive_error_limit (4)" in result.message
    assert "unreachable" in result.message


def test_errors_do_not_count_and_a_measurement_resets_them() -> None:
    metric = errors([DOWN, [0.01], DOWN, [0.01]], interval="10s", count=2)
    result = run_analysis([metric], CONTEXT, FakeClock())
    assert result.phase is Phase.SUCCESSFUL
    assert result.metrics[0].error == 2 and len(result.metrics[0].measurements) == 4


def test_an_error_without_interval_is_retried_after_10s() -> None:
    clock = FakeClock()
    result = run_analysis([errors([DOWN, [0.01]])], CONTEXT, clock)
    assert result.phase is Phase.SUCCESSFUL and clock.slept == 10


def test_consecutive_successes_end_early_or_leave_it_to_a_person() -> None:
    metric = errors(
        [[0.01], [0.2], [0.01], [0.01]],
        interval="10s",
        count=10,
        failure_limit=3,
        consecutive_successes=2,
    )
    result = run_analysis([metric], CONTEXT, FakeClock())
    assert result.phase is Phase.SUCCESSFUL
    assert len(result.metrics[0].measurements) == 4
    metric = errors(
        [[0.01], [0.2], [0.01]], interval="10s", count=3, failure_limit=3, consecutive_successes=2
    )
    result = run_analysis([metric], CONTEXT, FakeClock())
    assert result.phase is Phase.INCONCLUSIVE
    assert "count (3) reached without 2 in a row" in result.message


def test_initial_delay() -> None:
    clock = FakeClock()
    result = run_analysis([errors([[0.01]], initial_delay="1m")], CONTEXT, clock)
    assert result.metrics[0].measurements[0].at == 1060


# -- several metrics -------------------------------------------------------------


def test_the_worst_metric_decides_and_a_failure_ends_the_run_at_once() -> None:
    clock = FakeClock()
    slow = Metric(
        "latency", Script([[0.1]] * 10), success_condition="result[0] < 1", interval="10s", count=10
    )
    fast = errors([[0.01], [0.2]], interval="5s", count=5)
    result = run_analysis([slow, fast], CONTEXT, clock)
    assert result.phase is Phase.FAILED and clock.slept == 5
    assert {m.name: m.phase for m in result.metrics} == {
        "latency": Phase.RUNNING,
        "errors": Phase.FAILED,
    }


def test_a_dry_run_metric_is_recorded_but_does_not_decide() -> None:
    dry = Metric("latency", Script([[9.0]]), success_condition="result[0] < 1", dry_run=True)
    result = run_analysis([dry, errors([[0.01]])], CONTEXT, FakeClock())
    assert result.phase is Phase.SUCCESSFUL
    assert [(m.name, m.phase, m.dry_run) for m in result.metrics] == [
        ("latency", Phase.FAILED, True),
        ("errors", Phase.SUCCESSFUL, False),
    ]
    only_dry = run_analysis(
        [Metric("x", Script([1.0]), failure_condition="result > 0", dry_run=True)],
        CONTEXT,
        FakeClock(),
    )
    assert only_dry.phase is Phase.SUCCESSFUL


def test_the_run_is_a_pure_state_machine() -> None:
    run = AnalysisRun([errors([], interval="30s", count=2)], started_at=0.0)
    assert run.phase is Phase.PENDING and [m.name for m in run.due(0.0)] == ["errors"]
    run.record("errors", Measurement(Phase.SUCCESSFUL, 0.0, [0.01]))
    assert run.phase is Phase.RUNNING
    assert run.due(29.0) == [] and run.next_at() == 30.0
    run.record("errors", Measurement(Phase.SUCCESSFUL, 30.0, [0.01]))
    assert run.phase is Phase.SUCCESSFUL and run.next_at() is None and run.due(99.0) == []
    summary = metric_summary(run.result().metrics[0])
    assert summary["phase"] == "successful" and summary["value"] == [0.01]


def test_queries_see_the_context() -> None:
    metric = errors([[0.01]])
    run_analysis([metric], CONTEXT, FakeClock())
    assert metric.provider.asked == [CONTEXT]  # type: ignore[attr-defined]


# -- checks before anything changes ----------------------------------------------


def test_check_metrics_refuses_an_unreachable_or_refusing_provider() -> None:
    check_metrics([errors([[]])], CONTEXT)  # an empty vector is fine before the canary
    refused = MeasurementFailed("Prometheus refused the query 'rate(': bad_data")
    with pytest.raises(MetricQueryError, match="metric 'errors': Prometheus refused") as info:
        check_metrics([errors([refused])], CONTEXT)
    assert isinstance(info.value, InputError) and info.value.metric == "errors"
    with pytest.raises(MetricQueryError, match="unreachable"):
        check_metrics([errors([DOWN])], CONTEXT)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"interval": "30s"}, "metrics.errors.count"),  # would never end
        ({"interval": "0s", "count": 2}, "metrics.errors.interval"),
        ({"count": 0}, "metrics.errors.count"),
        ({"failure_limit": -1}, "metrics.errors.failure_limit"),
        ({"success_condition": "result <"}, "metrics.errors.success_condition"),
        ({"failure_condition": "result > x"}, "metrics.errors.failure_condition"),
        ({"initial_delay": "soon"}, "metrics.errors.initial_delay"),
    ],
)
def test_bad_metrics_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        errors([], **kwargs)
    assert info.value.field == field


def test_a_run_needs_metrics_with_distinct_names() -> None:
    with pytest.raises(ConfigError):
        AnalysisRun([], 0.0)
    with pytest.raises(ConfigError):
        AnalysisRun([errors([]), errors([])], 0.0)


def test_interval_is_a_duration() -> None:
    assert errors([], interval=90, count=1).interval == timedelta(seconds=90)


@pytest.mark.parametrize(("passes", "phase"), [(True, "successful"), (False, "failed")])
def test_a_gate_metric_passes_or_fails_with_its_samples(passes: bool, phase: str) -> None:
    from zdd_swarm.canary.providers import GateProvider
    from zdd_swarm.testing import FakeClock

    samples: list[bool] = []

    def check() -> bool:
        samples.append(passes)
        return passes

    metric = Metric(
        "health", GateProvider(check), failure_condition="result == 0", interval="1s", count=3
    )
    result = run_analysis([metric], QueryContext("web"), FakeClock())
    assert result.phase.value == phase
    assert len(samples) == (3 if passes else 1)
