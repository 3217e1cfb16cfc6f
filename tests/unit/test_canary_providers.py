"""Metric providers against a fake HTTP session: what Prometheus' API and a
JSON endpoint answer, and what becomes of refusals and outages."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pytest
import requests

from zdd_swarm.canary.analysis import MeasurementFailed, QueryContext
from zdd_swarm.canary.providers import PrometheusProvider, WebProvider, parse_json_path
from zdd_swarm.errors import ConfigError

CONTEXT = QueryContext("web", "registry:5000/app:1", "registry:5000/app:2")


class FakeSession:
    """Answers every GET with ``status`` and ``body``; or raises ``error``."""

    def __init__(self, body: Any = None, status: int = 200, error: Exception | None = None):
        self.body, self.status, self.error = body, status, error
        self.calls: list[dict[str, Any]] = []

    def get(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 0,
    ) -> requests.Response:
        self.calls.append({"url": url, "params": params, "headers": headers, "timeout": timeout})
        if self.error is not None:
            raise self.error
        response = requests.Response()
        response.status_code = self.status
        body = self.body if isinstance(self.body, str) else json.dumps(self.body)
        response._content = body.encode()
        return response


def vector(*values: str) -> dict[str, Any]:
    result = [{"metric": {"instance": str(i)}, "value": [1.5e9, v]} for i, v in enumerate(values)]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def prometheus(session: FakeSession, query: str = "up") -> PrometheusProvider:
    return PrometheusProvider("http://127.0.0.1:9090/", query, session=session)


def test_prometheus_vector_is_a_list_of_values() -> None:
    session = FakeSession(vector("0.25", "NaN", "+Inf"))
    values = prometheus(session).measure(CONTEXT)
    assert values[0] == 0.25 and math.isnan(values[1]) and values[2] == math.inf
    assert session.calls[0]["url"] == "http://127.0.0.1:9090/api/v1/query"
    assert session.calls[0]["params"] == {"query": "up"}


def test_prometheus_scalar_matrix_and_empty_vector() -> None:
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1.5e9, "3"]}}
    assert prometheus(FakeSession(scalar)).measure(CONTEXT) == 3.0
    matrix = {
        "status": "success",
        "data": {"resultType": "matrix", "result": [{"values": [[1, "1"], [2, "2"]]}]},
    }
    assert prometheus(FakeSession(matrix)).measure(CONTEXT) == [[1.0, 2.0]]
    assert prometheus(FakeSession(vector())).measure(CONTEXT) == []


def test_the_query_is_templated_and_promql_braces_are_left_alone() -> None:
    session = FakeSession(vector("1"))
    query = (
        'sum(rate(http_requests_total{service="{service}",image="{new_image}",code=~"5.."}[1m]))'
        ' / sum(rate(http_requests_total{image!="{old_image}"}[1m]))'
    )
    prometheus(session, query).measure(CONTEXT)
    assert session.calls[0]["params"]["query"] == (
        'sum(rate(http_requests_total{service="web",image="registry:5000/app:2",code=~"5.."}[1m]))'
        ' / sum(rate(http_requests_total{image!="registry:5000/app:1"}[1m]))'
    )


def test_values_are_escaped_for_promql_strings() -> None:
    provider = prometheus(FakeSession(), 'x{a="{service}"}')
    assert provider.render(QueryContext('we"b\\')) == 'x{a="we\\"b\\\\"}'


def test_a_query_prometheus_rejects_is_a_failed_measurement_quoting_its_error() -> None:
    body = {"status": "error", "errorType": "bad_data", "error": '1:5: parse error: unexpected "("'}
    with pytest.raises(MeasurementFailed) as info:
        prometheus(FakeSession(body, status=400), "rate((").measure(CONTEXT)
    assert "refused the query 'rate(('" in str(info.value)
    assert "HTTP 400, bad_data" in str(info.value) and "parse error" in str(info.value)


@pytest.mark.parametrize(
    "session",
    [
        FakeSession(error=requests.ConnectionError("connection refused")),
        FakeSession(error=requests.Timeout("read timed out")),
        FakeSession("<html>bad gateway</html>", status=502),
        FakeSession({"status": "success", "data": {"resultType": "vector", "result": "x"}}),
        FakeSession(vector("not a number")),
    ],
)
def test_prometheus_outages_and_odd_answers_are_failed_measurements(session: FakeSession) -> None:
    with pytest.raises(MeasurementFailed):
        prometheus(session).measure(CONTEXT)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"address": "127.0.0.1:9090"}, "prometheus.address"),
        ({"query": " "}, "prometheus.query"),
        ({"query": "up{job='{job}'}"}, "prometheus.query"),  # an unknown placeholder
        ({"timeout": 0}, "prometheus.timeout"),
    ],
)
def test_bad_prometheus_settings(kwargs: dict[str, Any], field: str) -> None:
    settings = {"address": "http://127.0.0.1:9090", "query": "up", **kwargs}
    with pytest.raises(ConfigError) as info:
        PrometheusProvider(**settings)
    assert info.value.field == field


# -- web -----------------------------------------------------------------------


def test_web_takes_a_value_at_a_json_path() -> None:
    session = FakeSession({"data": {"rates": [{"errors": 0.01}], "ok": True}})
    provider = WebProvider(
        "http://127.0.0.1:8080/stats?service={service}&image={new_image}",
        "$.data.rates[0].errors",
        headers={"Authorization": "Bearer x"},
        session=session,
    )
    assert provider.measure(CONTEXT) == 0.01
    assert session.calls[0]["url"] == (
        "http://127.0.0.1:8080/stats?service=web&image=registry%3A5000%2Fapp%3A2"
    )
    assert session.calls[0]["headers"] == {"Authorization": "Bearer x"}
    whole = WebProvider("http://127.0.0.1:8080/", session=session).measure(CONTEXT)
    assert whole["data"]["ok"] is True


@pytest.mark.parametrize(
    "session",
    [
        FakeSession({"data": {}}),  # no such path
        FakeSession({"data": {"rates": []}}),
        FakeSession({"error": "down"}, status=503),
        FakeSession("not json"),
        FakeSession(error=requests.ConnectionError("refused")),
    ],
)
def test_web_failures_are_failed_measurements(session: FakeSession) -> None:
    provider = WebProvider("http://127.0.0.1:8080/", "$.data.rates[0]", session=session)
    with pytest.raises(MeasurementFailed):
        provider.measure(CONTEXT)


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("$", ()),
        ("$.a.b[0]", ("a", "b", 0)),
        ("a.b", ("a", "b")),
        ("$['error-rate']", ("error-rate",)),
        ('$["x"][2].y', ("x", 2, "y")),
    ],
)
def test_json_paths(path: str, parts: tuple[Any, ...]) -> None:
    assert parse_json_path(path) == parts


@pytest.mark.parametrize("path", ["$..a", "$.a[", "$.a[x]", "$ a", "a..b"])
def test_bad_json_paths(path: str) -> None:
    with pytest.raises(ConfigError, match="json_path"):
        WebProvider("http://127.0.0.1:8080/", path)


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("registry:5000/web:2", "2"),
        ("registry:5000/web", ""),
        ("web:2.1@sha256:" + "0" * 64, "2.1"),
        ("", ""),
    ],
)
def test_queries_may_name_the_images_tags(image: str, tag: str) -> None:
    provider = PrometheusProvider("http://prometheus:9090", 'up{version="{new_tag}"}')
    context = QueryContext("web", "registry:5000/web:1", image)
    assert provider.render(context) == f'up{{version="{tag}"}}'
