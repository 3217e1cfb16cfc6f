"""Analysis in blue-green, on the fake engine in simulated time: metrics
measured on the new colour alongside its preview (and post-switch) checks,
measured once before anything changes, and deciding the switch."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from zdd_swarm import ConfigError, Controller, RolloutOptions
from zdd_swarm.bluegreen import (
    BlueGreen,
    BlueGreenCode,
    BlueGreenOptions,
    BlueGreenOutcome,
    Colour,
    LabelRouter,
)
from zdd_swarm.bluegreen.model import LABEL_FAILED, BlueGreenResult
from zdd_swarm.canary.analysis import MeasurementFailed, Metric, QueryContext
from zdd_swarm.errors import MetricQueryError
from zdd_swarm.gates import CallableGate
from zdd_swarm.testing import FakeClock, FakeEngine

ROUTE = "traefik.http.routers.web"
DOWN = MeasurementFailed("http://127.0.0.1:9/api/v1/query unreachable: ConnectionError")


class Script:
    """A provider answering from a list (an exception in it is raised); it
    records what it was asked, and when."""

    def __init__(self, clock: FakeClock, values: Iterable[Any]) -> None:
        self.clock, self.values = clock, list(values)
        self.asked: list[tuple[float, QueryContext]] = []

    def measure(self, context: QueryContext) -> Any:
        self.asked.append((self.clock.monotonic(), context))
        value = self.values.pop(0) if len(self.values) > 1 else self.values[0]
        if isinstance(value, Exception):
            raise value
        return value


def ratio_metric(provider: Script, **kwargs: Any) -> Metric:
    kwargs.setdefault("interval", "5s")
    kwargs.setdefault("count", 3)
    return Metric("error-ratio", provider, success_condition="result[0] < 0.05", **kwargs)


def setup(engine: FakeEngine, clock: FakeClock, **options: Any) -> tuple[BlueGreen, LabelRouter]:
    engine.add_service("web-blue", "app:1", replicas=3, extra={"Labels": {f"{ROUTE}.rule": "x"}})
    router = LabelRouter(engine, "web", [ROUTE])
    controller = Controller(engine, clock=clock)
    rollout = RolloutOptions(task_deadline="30s")
    return BlueGreen(router, controller, BlueGreenOptions(**options), rollout), router


def stage_events(seen: list[Any], stage: str) -> list[Any]:
    return [e for e in seen if e.name == "blue_green_stage" and e.stage == stage]


def test_a_failing_preview_analysis_is_never_switched_to(
    engine: FakeEngine, clock: FakeClock
) -> None:
    # the first answer is the measurement before anything changes (not judged)
    provider = Script(clock, [[0.0], [0.01], [0.3]])
    requests: list[float] = []
    gate = CallableGate(lambda: requests.append(clock.monotonic()) is None, name="preview")
    bg, router = setup(
        engine, clock, preview_checks=[gate], preview_analysis=[ratio_metric(provider)]
    )
    seen: list[Any] = []
    bg.controller.hooks.append(seen.append)

    result = bg.deploy("web", "app:2")

    assert result.outcome is BlueGreenOutcome.NOT_SWITCHED and result.exit_code == 1
    assert result.code == "analysis_failed", result.summary()
    assert result.reason.message.startswith(
        "preview analysis failed on green: metric 'error-ratio'"
    )
    assert "value [0.3]" in result.reason.message
    assert router.active() is Colour.BLUE and "switch" not in result.steps
    assert engine.inspect_service("web-green").replicas == 0
    assert engine.inspect_service("web-green").spec["Labels"][LABEL_FAILED] == "app:2"
    # measured on the new colour, with the images of both releases
    assert {c for _, c in provider.asked} == {QueryContext("web-green", "app:1", "app:2")}
    # alongside the preview checks: the second measurement came 5 s after the first
    times = [t for t, _ in provider.asked[1:]]
    assert times[1] - times[0] == 5 and requests[0] <= times[0] and requests[-1] >= times[1]
    summary = result.analyses["preview"]
    assert summary["phase"] == "failed"
    assert [(m["name"], m["successful"], m["failed"]) for m in summary["metrics"]] == [
        ("error-ratio", 1, 1)
    ]
    assert result.to_dict()["analyses"]["preview"] == summary
    (event,) = stage_events(seen, "preview")
    assert not event.ok and event.analysis == summary and event.samples == len(requests)


def test_a_passing_analysis_switches_once_window_and_analysis_are_over(
    engine: FakeEngine, clock: FakeClock
) -> None:
    provider = Script(clock, [[0.01]])
    gate = CallableGate(lambda: True, name="preview")
    bg, router = setup(
        engine,
        clock,
        preview_checks=[gate],
        preview_window="5s",
        preview_analysis=[ratio_metric(provider)],  # 3 measurements, 5 s apart: 10 s
    )
    seen: list[Any] = []
    bg.controller.hooks.append(seen.append)

    result = bg.deploy("web", "app:2")

    assert result.outcome is BlueGreenOutcome.SWITCHED, result.summary()
    assert router.active() is Colour.GREEN
    assert result.analyses["preview"]["phase"] == "successful"
    assert len(provider.asked) == 1 + 3
    # the checks were sampled until the analysis ended, beyond their window
    assert result.checks["preview"].samples >= 10
    (event,) = stage_events(seen, "preview")
    assert event.ok and event.analysis["phase"] == "successful"
    again = BlueGreenResult.from_record(result.to_record())
    assert again is not None and again.analyses == result.analyses


def test_an_unreachable_provider_is_bad_input_and_changes_nothing(
    engine: FakeEngine, clock: FakeClock
) -> None:
    bg, router = setup(engine, clock, preview_analysis=[ratio_metric(Script(clock, [DOWN]))])
    updates = list(engine.updates)
    with pytest.raises(MetricQueryError, match="error-ratio"):
        bg.deploy("web", "app:2")
    assert engine.updates == updates
    assert [s.spec["Name"] for s in engine.services.values()] == ["web-blue"]
    assert router.active() is Colour.BLUE


def test_a_provider_that_stops_answering_errs_the_analysis(
    engine: FakeEngine, clock: FakeClock
) -> None:
    metric = ratio_metric(Script(clock, [[0.0], DOWN]), consecutive_error_limit=1)
    bg, router = setup(engine, clock, preview_analysis=[metric])
    result = bg.deploy("web", "app:2")
    assert result.outcome is BlueGreenOutcome.NOT_SWITCHED and result.code == "analysis_failed"
    assert result.analyses["preview"]["phase"] == "error"
    assert "unreachable" in result.reason.message
    assert router.active() is Colour.BLUE


def test_an_inconclusive_analysis_is_not_a_pass(engine: FakeEngine, clock: FakeClock) -> None:
    metric = Metric(
        "error-ratio",
        Script(clock, [[0.1]]),
        success_condition="result[0] < 0.05",
        failure_condition="result[0] > 0.2",
    )
    bg, router = setup(engine, clock, preview_analysis=[metric])
    result = bg.deploy("web", "app:2")
    assert result.code == "analysis_failed" and "inconclusive" in result.reason.message
    assert router.active() is Colour.BLUE


def test_a_dry_run_metric_is_reported_but_never_fails(engine: FakeEngine, clock: FakeClock) -> None:
    metric = ratio_metric(Script(clock, [[0.9]]), dry_run=True)
    bg, _ = setup(engine, clock, preview_analysis=[metric])
    result = bg.deploy("web", "app:2")
    assert result.outcome is BlueGreenOutcome.SWITCHED, result.summary()
    (reported,) = result.analyses["preview"]["metrics"]
    assert reported["dry_run"] and reported["phase"] == "failed"


def test_a_preview_check_failure_keeps_its_own_code(engine: FakeEngine, clock: FakeClock) -> None:
    gate = CallableGate(lambda: False, name="preview")
    metric = ratio_metric(Script(clock, [[0.0]]))
    bg, _ = setup(engine, clock, preview_checks=[gate], preview_analysis=[metric])
    result = bg.deploy("web", "app:2")
    assert result.code == "preview_check_failed"
    assert result.analyses["preview"]["phase"] == "pending"  # failed before a measurement


def test_a_failing_post_switch_analysis_switches_back(engine: FakeEngine, clock: FakeClock) -> None:
    provider = Script(clock, [[0.0], [0.4]])
    bg, router = setup(engine, clock, post_switch_analysis=[ratio_metric(provider)])
    result = bg.deploy("web", "app:2")
    assert result.outcome is BlueGreenOutcome.SWITCHED_BACK and result.exit_code == 1
    assert result.code == "analysis_failed"
    assert result.reason.message.startswith("post-switch analysis failed on green")
    assert router.active() is Colour.BLUE
    assert engine.inspect_service("web-green").replicas == 0
    assert result.analyses == {"post_switch": result.analyses["post_switch"]}
    assert provider.asked[-1][1] == QueryContext("web-green", "app:1", "app:2")


def test_promote_measures_its_post_switch_analysis_first(
    engine: FakeEngine, clock: FakeClock
) -> None:
    bg, router = setup(engine, clock, auto_promote=False)
    bg.deploy("web", "app:2")
    down = BlueGreenOptions(post_switch_analysis=[ratio_metric(Script(clock, [DOWN]))])
    with pytest.raises(MetricQueryError):
        BlueGreen(router, bg.controller, down).promote("web")
    assert router.active() is Colour.BLUE
    provider = Script(clock, [[0.0]])
    good = BlueGreenOptions(post_switch_analysis=[ratio_metric(provider)])
    assert BlueGreen(router, bg.controller, good).promote("web").active is Colour.GREEN
    assert provider.asked[0][1] == QueryContext("web-green", "app:1", "app:2")


@pytest.mark.parametrize(
    "value",
    ["error-ratio", [object()], [Metric("m", DOWN), Metric("m", DOWN)]],  # type: ignore[arg-type]
)
def test_analysis_options_are_metrics_with_distinct_names(value: Any) -> None:
    with pytest.raises(ConfigError, match="preview_analysis"):
        BlueGreenOptions(preview_analysis=value)


# -- the CLI ---------------------------------------------------------------------


def analyses_file(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "analyses.yml"
    path.write_text(
        "analyses:\n"
        "  errors:\n"
        f"    - {{name: ratio, web: {{url: '{url}', json_path: $.ratio}},"
        " success_condition: result < 0.05}\n"
        "  latency:\n"
        f"    - {{name: slow, web: {{url: '{url}', json_path: $.ratio}},"
        " success_condition: result > 1}\n"
    )
    return path


def deploy(engine: FakeEngine, clock: FakeClock, *args: str) -> tuple[int, dict[str, Any]]:
    from click.testing import CliRunner

    from zdd_swarm.cli import _Obj, cli

    obj = _Obj(engine_factory=lambda host: engine, clock=clock)
    argv = ["bluegreen", "deploy", "web", "--image", "app:2", "--router", f"labels:{ROUTE}"]
    result = CliRunner().invoke(cli, [*argv, *args, "--json"], obj=obj)
    data: dict[str, Any] = json.loads(result.stdout)
    return result.exit_code, data


def test_cli_preview_analysis_from_a_file(
    engine: FakeEngine, clock: FakeClock, tmp_path: Path, error_ratio: str
) -> None:
    engine.add_service("web-blue", "app:1", replicas=2, extra={"Labels": {f"{ROUTE}.rule": "x"}})
    path = analyses_file(tmp_path, error_ratio)
    code, data = deploy(engine, clock, "--preview-analysis", f"{path}:latency")
    assert code == 1 and data["code"] == "analysis_failed", data
    assert data["analyses"]["preview"]["metrics"][0]["value"] == 0.0
    code, data = deploy(engine, clock, "--preview-analysis", f"{path}:errors")
    assert code == 0 and data["outcome"] == "switched", data
    assert data["analyses"]["preview"]["phase"] == "successful"


@pytest.mark.parametrize(
    ("arg", "says"),
    [
        ("{path}", "FILE:NAME, NAME one of: errors, latency"),
        ("{path}:nope", "an analysis of the file: errors, latency"),
        ("{tmp}/missing.yml", "a readable file"),
        ("{tmp}/steps.yml", "a file with analyses:"),
    ],
)
def test_cli_a_bad_analysis_file_or_name_is_bad_input(
    engine: FakeEngine, clock: FakeClock, tmp_path: Path, arg: str, says: str
) -> None:
    engine.add_service("web-blue", "app:1", replicas=2, extra={"Labels": {f"{ROUTE}.rule": "x"}})
    path = analyses_file(tmp_path, "http://127.0.0.1:9/")
    (tmp_path / "steps.yml").write_text("steps: [50%, 100%]\n")
    code, data = deploy(engine, clock, "--preview-analysis", arg.format(path=path, tmp=tmp_path))
    assert code == 2 and data["reason"].startswith("--preview-analysis: invalid value")
    assert says in data["reason"]
    assert [s.spec["Name"] for s in engine.services.values()] == ["web-blue"]


def test_cli_an_unreachable_provider_exits_2_with_nothing_changed(
    engine: FakeEngine, clock: FakeClock, tmp_path: Path
) -> None:
    engine.add_service("web-blue", "app:1", replicas=2, extra={"Labels": {f"{ROUTE}.rule": "x"}})
    path = analyses_file(tmp_path, "http://127.0.0.1:9/ratio")
    updates = list(engine.updates)
    code, data = deploy(engine, clock, "--preview-analysis", f"{path}:errors")
    assert code == 2 and "metric 'ratio'" in data["reason"], data
    assert engine.updates == updates


def test_blue_green_in_python_takes_an_analysis() -> None:
    import zdd_swarm

    with pytest.raises(ConfigError, match="preview_analysis"):
        zdd_swarm.blue_green(
            "web", image="app:2", router_labels=[ROUTE], preview_analysis=["errors"]
        )


def test_the_reason_codes_are_the_documented_ones() -> None:
    text = (Path(__file__).parents[2] / "docs" / "blue-green.md").read_text()
    table = text.split("The result's `code` says why", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE)) == set(BlueGreenCode)
