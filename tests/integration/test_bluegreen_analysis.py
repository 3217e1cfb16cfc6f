"""Blue-green with an analysis on the preview route, judged by the lab's
Prometheus: a release whose tasks are healthy but answer a share of requests
with 500 (``flaky``) is never switched to; a good one is.

The preview check sends the preview traffic: a burst of requests to the new
colour's service from a container on the lab's overlay, passing when every
request is answered (a 500 is an answer). The app counts its requests by
status code on ``/metrics``, labelled with its tag, and the lab's Prometheus
scrapes every task of a service labelled ``prometheus.scrape=true`` (both
colours: the label is copied with the spec).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from docker.errors import NotFound

from zdd_swarm.bluegreen import BlueGreen, BlueGreenOptions, BlueGreenOutcome, Colour, LabelRouter
from zdd_swarm.canary import Metric, PrometheusProvider
from zdd_swarm.gates import CallableGate

from .support import controller, create_service, overlay_fetch, running_tasks

pytestmark = pytest.mark.integration

ROUTE = "traefik.http.routers.app"
#: the new colour's share of 5xx over the last 10 s of its tasks' counters
ERROR_RATIO = """
sum(rate(app_request_errors_total{service="{service}",tag="{new_tag}"}[10s]))
/ sum(rate(app_requests_total{service="{service}",tag="{new_tag}"}[10s]))
"""
BURST = 5


@pytest.fixture
def app(service_name: str, docker_client: Any) -> Iterator[str]:
    """An app name; its colour services are removed after the test."""
    yield service_name
    for colour in Colour:
        with contextlib.suppress(NotFound):
            docker_client.api.remove_service(colour.service(service_name))


def error_ratio(prometheus: str) -> Metric:
    """Below 5 % passes, 5 % or more fails at once; no traffic counted yet
    (NaN) is inconclusive, twice at most."""
    return Metric(
        "error-ratio",
        PrometheusProvider(prometheus, ERROR_RATIO.strip()),
        success_condition="result[0] < 0.05",
        failure_condition="result[0] >= 0.05",
        initial_delay="6s",
        interval="3s",
        count=3,
        inconclusive_limit=2,
    )


def preview_traffic(fetch: Callable[[str, float], Any], url: str) -> CallableGate:
    """A check that sends ``BURST`` requests to ``url`` and passes when every
    one is answered, a 500 too: what is judged is the analysis."""

    def answered() -> bool:
        for _ in range(BURST):
            try:
                fetch(url, 3.0)
            except OSError as exc:
                if "HTTP/1.1 5" not in str(exc):
                    raise
        return True

    return CallableGate(answered, name="preview-traffic")


def deploy(
    lab: Any, docker_client: Any, engine: Any, prometheus: str, app: str, tag: str
) -> tuple[Any, LabelRouter]:
    create_service(
        docker_client,
        lab,
        Colour.BLUE.service(app),
        "v1",
        replicas=2,
        labels={"prometheus.scrape": "true", f"{ROUTE}.rule": "Host(`app.example`)"},
    )
    router = LabelRouter(engine, app, [ROUTE])
    with overlay_fetch(docker_client, lab) as fetch:
        options = BlueGreenOptions(
            preview_checks=[preview_traffic(fetch, f"http://{app}-green:8080/")],
            preview_window="10s",
            preview_analysis=[error_ratio(prometheus)],
            scale_down_delay="1s",
        )
        result = BlueGreen(router, controller(engine), options).deploy(app, lab.image(tag))
    print(f"\n{result.summary()}\n{result.analyses}")
    return result, router


def test_a_release_whose_preview_traffic_errors_is_never_switched_to(
    lab: Any, docker_client: Any, engine: Any, prometheus: str, app: str
) -> None:
    result, router = deploy(lab, docker_client, engine, prometheus, app, "flaky")

    assert result.outcome is BlueGreenOutcome.NOT_SWITCHED, result.summary()
    assert result.exit_code == 1 and result.code == "analysis_failed", result.summary()
    assert result.rollout is not None and result.rollout.outcome.ok  # healthy tasks
    analysis = result.analyses["preview"]
    assert analysis["phase"] == "failed"
    (metric,) = analysis["metrics"]
    assert 0.05 <= metric["value"][0] <= 0.6, metric
    # the router never sent production traffic to it: its labels stayed on blue
    assert router.active() is Colour.BLUE and "switch" not in result.steps
    green = docker_client.api.inspect_service(Colour.GREEN.service(app))["Spec"]
    assert green["Mode"]["Replicated"]["Replicas"] == 0
    assert not any(k.startswith(ROUTE) for k in green["Labels"])
    assert len(running_tasks(docker_client, Colour.BLUE.service(app))) == 2


def test_a_good_release_passes_its_preview_analysis_and_is_switched_to(
    lab: Any, docker_client: Any, engine: Any, prometheus: str, app: str
) -> None:
    result, router = deploy(lab, docker_client, engine, prometheus, app, "v2")

    assert result.outcome is BlueGreenOutcome.SWITCHED, result.summary()
    analysis = result.analyses["preview"]
    assert analysis["phase"] == "successful", analysis
    assert analysis["metrics"][0]["value"] == [0.0]
    assert result.checks["preview"].failed == 0
    assert router.active() is Colour.GREEN
