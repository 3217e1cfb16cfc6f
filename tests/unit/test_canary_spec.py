"""A canary as written in a canary file or a compose service's x-zdd-swarm."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from zdd_swarm.canary.providers import PrometheusProvider, WebProvider
from zdd_swarm.canary.spec import (
    CanarySpec,
    canary_from_compose,
    canary_from_data,
    load_canary_file,
)
from zdd_swarm.canary.steps import Analysis, Pause, SetWeight
from zdd_swarm.errors import ConfigError, StepError

COMPOSE = """
services:
  web:
    image: registry.example.com/web:2
    deploy:
      update_config: {parallelism: 1, order: start-first}
    x-zdd-swarm:
      analyses:
        errors:
          - name: error-ratio
            prometheus:
              address: http://127.0.0.1:9090
              query: >
                sum(rate(http_requests_total{code=~"5..",image="{new_image}"}[1m]))
                / sum(rate(http_requests_total{image="{new_image}"}[1m]))
            success_condition: result[0] < 0.05
            interval: 30s
            count: 4
            failure_limit: 1
          - name: latency
            web:
              url: http://127.0.0.1:8080/stats?service={service}
              jsonPath: $.p99
              headers: [{key: Authorization, value: Bearer x}]
            successCondition: result < 0.5
            dryRun: true
        smoke:
          metrics:
            - web: {url: "http://127.0.0.1:8080/health"}
              failureCondition: result.ok == false
      steps: [10%, analysis=errors, pause=1m, 50%, {analysis: smoke}, pause, 100%]
"""


def test_a_compose_service_carries_its_canary() -> None:
    service = yaml.safe_load(COMPOSE)["services"]["web"]
    spec = canary_from_compose(service)
    assert isinstance(spec, CanarySpec)
    assert spec.steps == (
        SetWeight(percent=10),
        Analysis(("errors",)),
        Pause(timedelta(minutes=1)),
        SetWeight(percent=50),
        Analysis(("smoke",)),
        Pause(),
        SetWeight(percent=100),
    )
    errors, latency = spec.analyses["errors"]
    assert isinstance(errors.provider, PrometheusProvider)
    assert (errors.name, errors.count, errors.failure_limit) == ("error-ratio", 4, 1)
    assert errors.interval == timedelta(seconds=30)
    assert isinstance(latency.provider, WebProvider) and latency.dry_run
    assert latency.provider.json_path == "$.p99"
    assert latency.provider.headers == {"Authorization": "Bearer x"}
    (smoke,) = spec.analyses["smoke"]
    assert smoke.name == "smoke"  # a single metric takes the analysis' name
    assert canary_from_compose({"image": "web:2"}) is None


def test_a_canary_file_is_a_list_of_steps_or_the_whole_mapping(tmp_path: Path) -> None:
    path = tmp_path / "canary.yml"
    path.write_text("- 25%\n- pause: 30s\n- 100%\n")
    assert load_canary_file(path).steps[1] == Pause(timedelta(seconds=30))
    path.write_text(yaml.safe_dump(yaml.safe_load(COMPOSE)["services"]["web"]["x-zdd-swarm"]))
    assert set(load_canary_file(path).analyses) == {"errors", "smoke"}


@pytest.mark.parametrize(
    ("extension", "field"),
    [
        ({"steps": ["10%", "analysis=errors", "100%"]}, "x-zdd-swarm.steps[1].analysis"),
        ({"steps": ["10%", "pause=never", "100%"]}, "x-zdd-swarm.steps[1].pause"),
        ({"steps": ["10%", "50%"]}, "x-zdd-swarm.steps[1].set"),
        ({"canary": []}, "x-zdd-swarm.canary"),
        ({"steps": "10%"}, "x-zdd-swarm.steps"),
        ({"analyses": [], "steps": ["100%"]}, "x-zdd-swarm.analyses"),
        (
            {"analyses": {"e": [{"prometheus": {"address": "x", "query": "up"}}]}},
            "x-zdd-swarm.analyses.e[0].prometheus.address",
        ),
        (
            {"analyses": {"e": [{"prometheus": {"address": "http://p", "query": "up(", "x": 1}}]}},
            "x-zdd-swarm.analyses.e[0].prometheus",
        ),
        (
            {
                "analyses": {
                    "e": [{"prometheus": {"address": "http://p", "query": "up"}, "count": 0}]
                }
            },
            "x-zdd-swarm.analyses.e[0].count",
        ),
        (
            {
                "analyses": {
                    "e": [
                        {
                            "prometheus": {"address": "http://p", "query": "up"},
                            "success_condition": "result <",
                        }
                    ]
                }
            },
            "x-zdd-swarm.analyses.e[0].success_condition",
        ),
        ({"analyses": {"e": [{"count": 1}]}}, "x-zdd-swarm.analyses.e[0]"),
        (
            {"analyses": {"e": [{"web": {"url": "http://w"}, "colour": "red"}]}},
            "x-zdd-swarm.analyses.e[0].colour",
        ),
        (
            {"analyses": {"e": [{"web": {"url": "http://w"}}, {"web": {"url": "http://v"}}]}},
            "x-zdd-swarm.analyses.e[0].name",
        ),
    ],
)
def test_errors_name_the_key(extension: dict[str, Any], field: str) -> None:
    extension.setdefault("steps", ["100%"])
    with pytest.raises(ConfigError) as info:
        canary_from_compose({"x-zdd-swarm": extension})
    assert info.value.field == field


def test_step_errors_keep_their_index() -> None:
    with pytest.raises(StepError) as info:
        canary_from_data({"steps": ["10%", "5%", "100%"]})
    assert (info.value.index, info.value.field) == (1, "canary.steps[1].set")


def test_bad_canary_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="readable"):
        load_canary_file(tmp_path / "missing.yml")
    path = tmp_path / "bad.yml"
    path.write_text("steps: [10%\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_canary_file(path)
    path.write_text("stages: []\n")
    with pytest.raises(ConfigError, match="stages"):
        load_canary_file(path)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"task_deadline": "30s"}, "task_deadline"),
        ({"analyses": {"errors": []}}, "analyses"),
    ],
)
def test_update_with_steps_refuses_what_a_canary_does_not_take(
    kwargs: dict[str, Any], named: str
) -> None:
    import zdd_swarm

    steps: Any = ["50%", "100%"]
    if named == "analyses":
        steps = CanarySpec((SetWeight(percent=100),))
    with pytest.raises(ConfigError) as caught:
        zdd_swarm.update("web", image="app:2", host="unix:///nonexistent", steps=steps, **kwargs)
    assert caught.value.field == named


def test_update_with_steps_refuses_a_bad_step_before_reaching_the_engine() -> None:
    import zdd_swarm

    with pytest.raises(StepError) as caught:
        zdd_swarm.update("web", image="app:2", host="unix:///nonexistent", steps=["10%", "150%"])
    assert "150%" in str(caught.value)


def test_a_stack_wave_beside_the_steps_is_not_the_canarys() -> None:
    assert canary_from_compose({"x-zdd-swarm": {"wave": 2}}) is None
    spec = canary_from_compose({"x-zdd-swarm": {"wave": 2, "steps": ["50%", "100%"]}})
    assert spec is not None and spec.steps == (SetWeight(percent=50), SetWeight(percent=100))


def test_a_gate_is_a_metric_whose_failed_samples_fail_it() -> None:
    from zdd_swarm.canary.providers import GateProvider
    from zdd_swarm.gates import HttpGate, TcpGate

    spec = canary_from_data(
        {
            "steps": ["50%", "analysis=health", "100%"],
            "analyses": {
                "health": {"gate": {"http": "http://web:8080/health,status=204"}},
                "port": {"gate": {"tcp": "web:8080"}, "interval": "1s", "count": 3},
            },
        }
    )
    health, port = spec.analyses["health"][0], spec.analyses["port"][0]
    assert health.provider == GateProvider(HttpGate("http://web:8080/health", expect_status=204))
    assert port.provider == GateProvider(TcpGate("web", 8080))
    assert health.failure_condition is not None and health.success_condition is None


@pytest.mark.parametrize(
    ("gate", "named"),
    [
        ({"http": "ftp://web"}, "analyses.health[0].gate.http"),
        ({"http": "http://web,status=abc"}, "analyses.health[0].gate.http"),
        ({"tcp": "web"}, "analyses.health[0].gate.tcp"),
        ({"udp": "web:53"}, "analyses.health[0].gate"),
    ],
)
def test_a_bad_gate_is_refused_by_name(gate: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        canary_from_data({"steps": ["100%"], "analyses": {"health": {"gate": gate}}})
    assert caught.value.field.endswith(named), caught.value.field
