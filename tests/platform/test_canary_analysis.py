"""Canary analysis against a real Prometheus (Debian's package): a real
query result judged, a query Prometheus rejects, and one that cannot reach
it, all refused or decided as they would be during a rollout."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from zdd_swarm.canary import Metric, Phase, PrometheusProvider, QueryContext, run_analysis
from zdd_swarm.canary.analysis import MeasurementFailed, check_metrics
from zdd_swarm.clock import SystemClock
from zdd_swarm.errors import MetricQueryError

from .conftest import Exporter, Prometheus, free_port

pytestmark = pytest.mark.integration  # installs Debian packages when missing (root)

CONTEXT = QueryContext("web", "registry:5000/app:1", "registry:5000/app:2")
QUERY = 'canary_error_ratio{service="{service}",image="{new_image}"}'


@pytest.fixture(scope="module")
def error_ratio(exporter: Exporter, prometheus: Prometheus) -> Iterator[None]:
    """The new release's error ratio, 0.2, as Prometheus scrapes it."""
    from prometheus_client import Gauge

    gauge = Gauge(
        "canary_error_ratio",
        "Share of failed requests",
        ["service", "image"],
        registry=exporter.registry,
    )
    gauge.labels("web", "registry:5000/app:2").set(0.2)
    gauge.labels("web", "registry:5000/app:1").set(0.0)
    prometheus.wait_for('canary_error_ratio{service="web"}', lambda r: len(r) == 2)
    yield
    exporter.registry.unregister(gauge)


def test_a_real_query_result_is_judged_and_quoted(
    prometheus: Prometheus, error_ratio: None
) -> None:
    provider = PrometheusProvider(prometheus.url, QUERY)
    assert provider.measure(CONTEXT) == [0.2]
    metric = Metric(
        "errors",
        provider,
        success_condition="result[0] < 0.05",
        interval="200ms",
        count=2,
        failure_limit=1,
    )
    result = run_analysis([metric], CONTEXT, SystemClock())
    assert result.phase is Phase.FAILED
    assert result.metrics[0].failed == 2
    assert "failed (2) > failure_limit (1)" in result.message
    assert "value [0.2]" in result.message
    good = Metric("errors", provider, failure_condition="result[0] > 0.5")
    assert run_analysis([good], CONTEXT, SystemClock()).phase is Phase.SUCCESSFUL


def test_a_query_prometheus_rejects_is_refused_before_anything_changes(
    prometheus: Prometheus,
) -> None:
    provider = PrometheusProvider(
        prometheus.url, 'sum(rate(canary_error_ratio{service="{service}"}'
    )
    with pytest.raises(MeasurementFailed, match="bad_data"):
        provider.measure(CONTEXT)
    with pytest.raises(MetricQueryError) as info:
        check_metrics([Metric("errors", provider, success_condition="result[0] < 1")], CONTEXT)
    assert "metric 'errors': Prometheus refused the query" in str(info.value)
    assert "HTTP 400" in str(info.value)


def test_an_unreachable_prometheus_is_refused_at_the_start_and_never_passes() -> None:
    provider = PrometheusProvider(f"http://127.0.0.1:{free_port()}", "up", timeout=1)
    metric = Metric("errors", provider, success_condition="result[0] < 1")
    with pytest.raises(MetricQueryError, match="unreachable"):
        check_metrics([metric], CONTEXT)
    short = Metric(
        "errors",
        provider,
        success_condition="result[0] < 1",
        interval="100ms",
        count=3,
        consecutive_error_limit=1,
    )
    result = run_analysis([short], CONTEXT, SystemClock())
    assert result.phase is Phase.ERROR and "unreachable" in result.message
