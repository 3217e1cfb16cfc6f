"""A canary judged by a real Prometheus, under the load clients of the
zero-downtime tests: a good release goes through every step with no failed
request; a release that is healthy but answers 20 % of requests with 500
(``flaky``) is stopped at its first step (10 %: one task of ten), and fails
a far smaller share of requests than the same release shipped with a plain
rolling update, which task health alone lets through.

The lab's Prometheus scrapes the app's tasks (``prometheus`` fixture); the
app counts its requests by status code on ``/metrics``, labelled with its
tag. Run alone with ``scripts/test -m load``.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest

from zdd_swarm import Controller, DockerEngine, Outcome, RolloutOptions, ServiceChange, UpdateConfig
from zdd_swarm.canary import Canary, CanaryOutcome, CanarySpec, Metric, PrometheusProvider
from zdd_swarm.canary.steps import parse_steps

from .load import LoadResult, load
from .support import create_service, running_tasks

pytestmark = [pytest.mark.integration, pytest.mark.load, pytest.mark.serial]

REPLICAS = 10
CONFIG = UpdateConfig(parallelism=2, order="start-first", delay="1s", monitor="2s")
#: the new release's share of 5xx, over the last 10 s of its tasks' counters
ERROR_RATIO = """
sum(rate(app_request_errors_total{service="{service}",tag="{new_tag}"}[10s]))
/ sum(rate(app_requests_total{service="{service}",tag="{new_tag}"}[10s]))
"""
#: load per release: long enough for the whole canary of v2; the same for
#: the canary and the rolling update of flaky, so that their shares compare
LOAD_SECONDS = {"v2": 50, "flaky": 30}


@dataclass
class Run:
    """What one release under load did: its outcome, reason and traffic."""

    outcome: str
    reason: str
    traffic: LoadResult
    seconds: float
    failed_step: int | None = None

    @property
    def failed_share(self) -> float:
        return self.traffic.failed / self.traffic.sent if self.traffic.sent else 1.0


def error_ratio(prometheus: str) -> Metric:
    """The new release's error ratio: below 5 % passes, 5 % or more fails
    at once; no traffic yet (NaN) is inconclusive, once."""
    return Metric(
        "error-ratio",
        PrometheusProvider(prometheus, ERROR_RATIO.strip()),
        success_condition="result[0] < 0.05",
        failure_condition="result[0] >= 0.05",
        initial_delay="3s",
        interval="2s",
        count=3,
        inconclusive_limit=1,
    )


def start(lab: Any, docker_client: Any, name: str) -> None:
    """10 tasks of v1, scraped by the lab's Prometheus; old tasks serve 8 s
    after SIGTERM, as in the zero-downtime tests (Swarm's DNS lags)."""
    create_service(
        docker_client,
        lab,
        name,
        "v1",
        replicas=REPLICAS,
        update_config=CONFIG,
        labels={"prometheus.scrape": "true"},
        stop_grace_period=15_000_000_000,
        env=["APP_DRAIN_SECONDS=8"],
    )


def flaky_tasks_seen(prometheus: str, name: str) -> int:
    """How many tasks of ``flaky`` Prometheus scraped in the last 2 minutes."""
    query = f'count(max_over_time(app_request_errors_total{{service="{name}",tag="flaky"}}[2m]))'
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        result = json.load(response)["data"]["result"]
    return int(result[0]["value"][1]) if result else 0


def tags(docker_client: Any, name: str) -> list[str]:
    return sorted(
        t["Spec"]["ContainerSpec"]["Image"].rpartition(":")[2]
        for t in running_tasks(docker_client, name)
    )


def canary_under_load(
    lab: Any, docker_client: Any, prometheus: str, name: str, tag: str, steps: list[str]
) -> Run:
    spec = CanarySpec(parse_steps(steps, {"errors"}), {"errors": (error_ratio(prometheus),)})
    canary = Canary(DockerEngine(lab.docker_host), spec, poll_interval=0.5, step_timeout=90)
    with load(docker_client, lab, name, seconds=LOAD_SECONDS[tag]) as traffic:
        time.sleep(4)
        began = time.monotonic()
        result = canary.run(name, lab.image(tag))
        took = time.monotonic() - began
    print(f"\ncanary v1 -> {tag}: {result.outcome} in {took:.0f}s ({result.reason}); {traffic}")
    return Run(result.outcome.value, result.reason, traffic, took, result.failed_step)


def rolling_under_load(lab: Any, docker_client: Any, name: str, tag: str) -> Run:
    controller = Controller(
        DockerEngine(lab.docker_host), options=RolloutOptions(task_deadline="30s")
    )
    with load(docker_client, lab, name, seconds=LOAD_SECONDS[tag]) as traffic:
        time.sleep(4)
        began = time.monotonic()
        result = controller.update(name, ServiceChange(image=lab.image(tag)))
        took = time.monotonic() - began
    print(f"\nrolling update v1 -> {tag}: {result.summary()}; {traffic}")
    return Run(result.outcome.value, result.reason.message, traffic, took)


def test_a_good_release_passes_every_analysis_under_load_with_no_failed_request(
    lab: Any, docker_client: Any, service_name: str, prometheus: str
) -> None:
    start(lab, docker_client, service_name)
    steps = ["10%", "analysis=errors", "50%", "analysis=errors", "100%"]

    run = canary_under_load(lab, docker_client, prometheus, service_name, "v2", steps)

    assert run.outcome == CanaryOutcome.COMPLETED, run.reason
    assert tags(docker_client, service_name) == ["v2"] * REPLICAS
    assert run.seconds < LOAD_SECONDS["v2"] - 4, "the canary outlasted the load"
    assert run.traffic.failed == 0, f"{run.traffic}; {run.traffic.errors}"
    assert run.traffic.sent >= 5_000, str(run.traffic)


def test_a_flaky_release_is_stopped_at_10_percent_and_fails_far_fewer_requests_than_rolling(
    lab: Any, docker_client: Any, service_name: str, prometheus: str
) -> None:
    start(lab, docker_client, service_name)
    original = docker_client.api.inspect_service(service_name)["Spec"]

    canary = canary_under_load(
        lab, docker_client, prometheus, service_name, "flaky", ["10%", "analysis=errors", "100%"]
    )

    assert canary.outcome == CanaryOutcome.ROLLED_BACK, canary.reason
    assert canary.failed_step == 1, canary.reason  # the analysis after 10 %
    # Prometheus saw one task of the flaky release, never more
    assert flaky_tasks_seen(prometheus, service_name) == 1
    value = re.search(r"value \[([0-9.]+)\]", canary.reason)
    assert value is not None and 0.05 <= float(value.group(1)) <= 0.5, canary.reason
    assert tags(docker_client, service_name) == ["v1"] * REPLICAS
    spec = docker_client.api.inspect_service(service_name)["Spec"]
    assert spec["TaskTemplate"]["ContainerSpec"] == original["TaskTemplate"]["ContainerSpec"]
    assert spec["UpdateConfig"] == original["UpdateConfig"]

    rolling = rolling_under_load(lab, docker_client, service_name, "flaky")

    assert rolling.outcome == Outcome.COMPLETED, rolling.reason  # healthy tasks: it goes out
    print(
        f"\nfailed share: canary {canary.failed_share:.2%} ({canary.traffic.failed} of "
        f"{canary.traffic.sent}), rolling update {rolling.failed_share:.2%} "
        f"({rolling.traffic.failed} of {rolling.traffic.sent})"
    )
    assert rolling.failed_share > 0.05, str(rolling.traffic)
    assert canary.failed_share * 5 < rolling.failed_share, (canary.traffic, rolling.traffic)
    assert canary.traffic.connection_errors == 0, canary.traffic.errors
