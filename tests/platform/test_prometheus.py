"""Rollout metrics read back through a real Prometheus (Debian's package):
the hook's registry served over HTTP as a platform serves it, the CLI's
Pushgateway push, its textfile checked by promtool, and every query of
the Grafana dashboard run against the series."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from zdd_swarm import Controller, ServiceChange, UpdateConfig, events
from zdd_swarm.cli import _Obj, cli
from zdd_swarm.metrics import PrometheusHook
from zdd_swarm.testing import FakeClock, FakeEngine, ImageBehaviour

from .conftest import Exporter, Prometheus

pytestmark = pytest.mark.integration  # installs Debian packages when missing (root)

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana-dashboard.json"


def values(result: list[dict[str, Any]]) -> dict[str, float]:
    return {
        ",".join(
            f"{k}={v}"
            for k, v in sorted(r["metric"].items())
            if k not in ("__name__", "instance", "job")
        ): float(r["value"][1])
        for r in result
    }


@pytest.fixture(scope="module")
def hook(exporter: Exporter) -> Iterator[PrometheusHook]:
    yield PrometheusHook(exporter.registry)


def test_rollouts_are_read_back_through_the_prometheus_http_api(
    prometheus: Prometheus, hook: PrometheusHook
) -> None:
    clock = FakeClock()
    engine = FakeEngine(clock)
    engine.add_service("web", "app:1", replicas=4, update_config=UpdateConfig(parallelism=2))
    engine.add_service("api", "api:1", replicas=2)
    engine.behave("api:crash", ImageBehaviour(fail_after=1.0))
    in_flight: list[list[dict[str, Any]]] = []

    def wait_for_scrape(event: events.Event) -> None:
        # simulated time stands still while Prometheus scrapes the rollout in flight
        if isinstance(event, events.BatchStarted) and event.service == "web":
            in_flight.append(
                prometheus.wait_for(
                    'zdd_swarm_rollout_phase{service="web",phase="update"} == 1', bool
                )
            )

    controller = Controller(engine, clock=clock, hooks=[hook, wait_for_scrape])
    assert controller.update("web", ServiceChange(image="app:2")).outcome.value == "completed"
    assert controller.update("api", ServiceChange(image="api:crash")).code == "task_failed"
    assert controller.rollback("web").code == "rollback_completed"
    assert in_flight  # the gauge was seen at 1 while the update ran

    rollouts = values(
        prometheus.wait_for(
            'zdd_swarm_rollouts_total{job="platform"}',
            lambda r: sum(float(x["value"][1]) for x in r) >= 3,
        )
    )
    assert rollouts == {
        "code=update_completed,outcome=completed,service=web": 1,
        "code=task_failed,outcome=rolled_back,service=api": 1,
        "code=rollback_completed,outcome=completed,service=web": 1,
    }
    assert values(prometheus.query('zdd_swarm_rollbacks_total{job="platform"}')) == {
        "by=zdd_swarm,code=task_failed,service=api": 1,
        "by=zdd_swarm,code=manual_rollback,service=web": 1,
    }
    assert values(prometheus.query('zdd_swarm_verdict_latency_seconds_count{job="platform"}')) == {
        "service=api": 1
    }
    assert values(prometheus.query('zdd_swarm_batches_total{job="platform",service="web"}')) == {
        "phase=update,service=web": 2,
        "phase=rollback,service=web": 4,
    }
    durations = values(prometheus.query('zdd_swarm_rollout_duration_seconds_count{job="platform"}'))
    assert durations == {"outcome=completed,service=web": 2, "outcome=rolled_back,service=api": 1}
    # nothing in flight any more
    assert prometheus.query("zdd_swarm_rollout_phase == 1") == []


def test_every_query_of_the_grafana_dashboard_runs(
    prometheus: Prometheus, hook: PrometheusHook
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"]]
    assert len(exprs) > 10
    for expr in exprs:
        concrete = (
            expr.replace("$__rate_interval", "1m")
            .replace("$__range", "1h")
            .replace("$service", ".*")
        )
        assert not re.search(r"\$\w", concrete), concrete
        prometheus.query(concrete)  # raises unless Prometheus accepts it
    names = {
        re.sub(r"_(total|bucket|sum|count)$", "", name)
        for name in re.findall(r"zdd_swarm_[a-z_]+", " ".join(exprs))
    }
    exposed = {family.name for family in hook.registry.collect()}
    assert names <= exposed, names - exposed


def test_the_cli_pushes_to_a_pushgateway_and_prometheus_reads_it(
    prometheus: Prometheus, pushgateway: str
) -> None:
    clock = FakeClock()
    engine = FakeEngine(clock)
    engine.add_service("pushed", "app:1", replicas=2)
    result = CliRunner().invoke(
        cli,
        ["update", "pushed", "--image", "app:2", "--json", "--pushgateway", pushgateway],
        obj=_Obj(engine_factory=lambda host: engine, clock=clock),
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["warnings"] == []
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5) as response:
        exposed = response.read().decode()
    assert re.search(
        r'zdd_swarm_rollouts_total\{code="update_completed",instance="",job="zdd_swarm",'
        r'outcome="completed",service="pushed"\} 1',
        exposed,
    ), exposed
    found = prometheus.wait_for('zdd_swarm_rollouts_total{job="zdd_swarm"}', bool)
    assert [(r["metric"]["service"], r["metric"]["outcome"]) for r in found] == [
        ("pushed", "completed")
    ]


def test_the_cli_textfile_passes_promtool(debian_binaries: dict[str, str], tmp_path: Path) -> None:
    clock = FakeClock()
    engine = FakeEngine(clock)
    engine.add_service("web", "app:1", replicas=2)
    engine.behave("app:crash", ImageBehaviour(fail_after=1.0))
    target = tmp_path / "zdd_swarm.prom"
    result = CliRunner().invoke(
        cli,
        ["update", "web", "--image", "app:crash", "--metrics-textfile", str(target)],
        obj=_Obj(engine_factory=lambda host: engine, clock=clock),
    )
    assert result.exit_code == 1, result.output
    promtool = Path(debian_binaries["prometheus"]).with_name("promtool")
    checked = subprocess.run(
        [str(promtool), "check", "metrics"],
        input=target.read_bytes(),
        capture_output=True,
        check=False,
    )
    # format and Prometheus' naming conventions (promtool's lint)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked
    assert 'zdd_swarm_rollbacks_total{by="zdd_swarm",code="task_failed",service="web"} 1.0' in (
        target.read_text()
    )
