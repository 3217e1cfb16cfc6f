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

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from zdd_swarm.bluegreen import BlueGreen, BlueGreenOptions, BlueGreenOutcome, Colour, LabelRouter
from zdd_swarm.canary import Metric
from zdd_swarm.gates import CallableGate

from .support import controller, create_service, overlay_fetch, running_tasks
from .test_canary_under_load import error_ratio

pytestmark = pytest.mark.integration

ROUTE = "traefik.http.routers.app"
BURST = 5


def error_ratio_metric(prometheus: str) -> Metric:
    """The canary's error ratio (below 5 % passes, 5 % or more fails at once),
    measured from 6 s into the preview (its tasks scraped, its traffic counted):
    no traffic counted yet (NaN) is inconclusive, twice at most."""
    return replace(error_ratio(prometheus), initial_delay="6s", interval="3s", inconclusive_limit=2)


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
            preview_analysis=[error_ratio_metric(prometheus)],
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
