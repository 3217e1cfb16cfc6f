"""The CLI: flags, JSON output and exit codes, against the fake engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from zdd_swarm.cli import _Obj, cli
from zdd_swarm.config import RollbackConfig, UpdateConfig
from zdd_swarm.errors import EngineUnavailable
from zdd_swarm.testing import FakeClock, FakeEngine, ImageBehaviour


@pytest.fixture
def engine(clock: FakeClock) -> FakeEngine:
    engine = FakeEngine(clock)
    engine.add_service("web", "app:1", replicas=4)
    engine.behave("app:crash", ImageBehaviour(fail_after=1.0))
    return engine


def run(engine: FakeEngine, clock: FakeClock, *args: str) -> tuple[int, Any, str]:
    runner = CliRunner()
    result = runner.invoke(
        cli, list(args), obj=_Obj(engine_factory=lambda host: engine, clock=clock)
    )
    payload = None
    if "--json" in args:
        payload = json.loads(result.stdout)
    return result.exit_code, payload, result.output


def test_update_completed_exits_0_with_json(engine: FakeEngine, clock: FakeClock) -> None:
    code, data, _ = run(
        engine, clock, "update", "web", "--image", "app:2", "--update-parallelism", "2", "--json"
    )
    assert code == 0
    assert data["outcome"] == "completed" and data["code"] == "update_completed"
    assert data["image_before"] == "app:1" and data["image_after"] == "app:2"
    assert len(data["batches"]) == 2
    assert {"id", "node", "state", "error"} <= set(data["batches"][0]["tasks"][0])
    assert engine.inspect_service("web").spec["UpdateConfig"]["Parallelism"] == 2


def test_rolled_back_exits_1(engine: FakeEngine, clock: FakeClock) -> None:
    code, data, _ = run(engine, clock, "update", "web", "--image", "app:crash", "--json")
    assert code == 1
    assert data["outcome"] == "rolled_back"


def test_pause_exits_3_and_rollback_failed_exits_4(engine: FakeEngine, clock: FakeClock) -> None:
    code, data, _ = run(
        engine,
        clock,
        "update",
        "web",
        "--image",
        "app:crash",
        "--update-failure-action",
        "pause",
        "--json",
    )
    assert (code, data["outcome"]) == (3, "paused")
    engine.add_service("api", "app:old", replicas=2)
    engine.behave("app:old", ImageBehaviour(reject=True))
    code, data, _ = run(engine, clock, "update", "api", "--image", "app:crash", "--json")
    assert (code, data["outcome"]) == (4, "rollback_failed")


def test_nothing_to_do_exits_0(engine: FakeEngine, clock: FakeClock) -> None:
    code, data, _ = run(engine, clock, "update", "web", "--image", "app:1", "--json")
    assert (code, data["code"]) == (0, "no_change")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--update-parallelism", "-1"], "parallelism"),
        (["--update-max-failure-ratio", "1.5"], "max_failure_ratio"),
        (["--update-delay", "10 parsecs"], "delay"),
        (["--update-monitor", "-5s"], "monitor"),
        (["--rollback-delay", "soon"], "delay"),
        (["--env-add", "NOEQUALS"], "env_add"),
        (["--label-add", "novalue"], "labels_add"),
        (["--env-add", "A=1", "--env-rm", "A"], "env_rm"),
        (["--task-deadline", "0s"], "task_deadline"),
        (["--timeout", "forever"], "timeout"),
        (["--gate-http", "ftp://x"], "url"),
        (["--gate-http", "http://x,bogus=1"], "--gate-http"),
        (["--gate-tcp", "nohostport"], "--gate-tcp"),
    ],
)
def test_bad_input_exits_2_and_sends_nothing(
    engine: FakeEngine, clock: FakeClock, args: list[str], needle: str
) -> None:
    version = engine.inspect_service("web").version
    code, data, _ = run(engine, clock, "update", "web", "--image", "app:2", *args, "--json")
    assert code == 2, data
    assert data["outcome"] == "error" and needle in data["reason"]
    assert engine.updates == []
    assert engine.inspect_service("web").version == version


@pytest.mark.parametrize(
    "args",
    [
        ["--update-order", "sideways"],
        ["--update-failure-action", "explode"],
        ["--rollback-failure-action", "rollback"],
        ["--update-parallelism", "two"],
    ],
)
def test_usage_errors_exit_2(engine: FakeEngine, clock: FakeClock, args: list[str]) -> None:
    code, _, output = run(engine, clock, "update", "web", *args)
    assert code == 2 and "Invalid value" in output
    assert engine.updates == []


def test_unknown_service_and_bad_image_exit_2(engine: FakeEngine, clock: FakeClock) -> None:
    code, data, _ = run(engine, clock, "update", "nope", "--image", "app:2", "--json")
    assert (code, data["error"]) == (2, "ServiceNotFound")
    code, data, _ = run(engine, clock, "update", "web", "--image", "App:Bad Ref", "--json")
    assert (code, data["error"]) == (2, "InvalidImageReference")
    code, data, _ = run(engine, clock, "update", "web", "--json")
    assert code == 2 and "at least one change" in data["reason"]


def test_not_a_manager_exits_2(engine: FakeEngine, clock: FakeClock) -> None:
    engine.manager = False
    code, data, _ = run(engine, clock, "update", "web", "--image", "app:2", "--json")
    assert (code, data["error"]) == (2, "NotAManager")


def test_unreachable_engine_exits_5(clock: FakeClock) -> None:
    def unreachable(host: str | None) -> Any:
        raise EngineUnavailable("cannot reach the Docker engine: connection refused")

    result = CliRunner().invoke(
        cli,
        ["update", "web", "--image", "app:2", "--json"],
        obj=_Obj(engine_factory=unreachable, clock=clock),
    )
    assert result.exit_code == 5
    assert json.loads(result.stdout)["code"] == "engine_error"


def test_compose_file_supplies_image_and_configs(
    engine: FakeEngine, clock: FakeClock, tmp_path: Path
) -> None:
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("""
services:
  web:
    image: app:2
    deploy:
      update_config: {parallelism: 2, order: start-first, delay: 1s, failure_action: rollback}
      rollback_config: {parallelism: 0}
""")
    code, data, _ = run(engine, clock, "update", "web", "--compose", str(compose), "--json")
    assert code == 0, data
    spec = engine.inspect_service("web").spec
    assert spec["UpdateConfig"]["Order"] == "start-first"
    assert spec["RollbackConfig"]["Parallelism"] == 0
    assert data["image_after"] == "app:2"


@pytest.mark.parametrize(
    "content, needle",
    [
        ("services: [unclosed", "YAML"),
        ("services:\n  other:\n    image: x\n", "service named 'web'"),
        ("services:\n  web:\n    deploy:\n      update_config: {order: sideways}\n", "order"),
        ("just a string\n", "services"),
    ],
)
def test_bad_compose_files_exit_2(
    engine: FakeEngine, clock: FakeClock, tmp_path: Path, content: str, needle: str
) -> None:
    compose = tmp_path / "c.yml"
    compose.write_text(content)
    code, data, _ = run(engine, clock, "update", "web", "--compose", str(compose), "--json")
    assert code == 2 and needle in data["reason"], data
    assert engine.updates == []


def test_dry_run_changes_nothing(engine: FakeEngine, clock: FakeClock) -> None:
    code, data, _ = run(
        engine,
        clock,
        "update",
        "web",
        "--image",
        "app:2",
        "--dry-run",
        "--update-parallelism",
        "2",
        "--json",
    )
    assert code == 0 and data["code"] == "dry_run"
    assert data["batches"] == 2 and "TaskTemplate.ContainerSpec.Image" in data["changes"]
    assert engine.updates == []
    code, _, output = run(engine, clock, "update", "web", "--image", "app:2", "--dry-run")
    assert code == 0 and "nothing was changed" in output


def test_dry_run_lists_only_what_changes_where_the_engine_left_out_zeros(
    clock: FakeClock,
) -> None:
    engine = FakeEngine(clock)
    # as the engine returns a config whose Delay and MaxFailureRatio are 0
    # and whose Monitor was never set
    left_out = {"Parallelism": 1, "FailureAction": "pause", "Order": "stop-first"}
    engine.add_service("web", "app:1", replicas=4, extra={"UpdateConfig": left_out})
    code, data, _ = run(
        engine, clock, "update", "web", "--update-parallelism", "2", "--dry-run", "--json"
    )
    assert code == 0 and data["changes"] == ["UpdateConfig.Parallelism"], data
    code, data, _ = run(
        engine, clock, "update", "web", "--update-delay", "0s", "--dry-run", "--json"
    )
    assert code == 0 and data["changes"] == [], data
    code, _, output = run(engine, clock, "update", "web", "--update-monitor", "5s", "--dry-run")
    assert code == 0 and "web: nothing to change" in output, output
    assert engine.updates == []


def test_human_output_ends_with_a_summary(engine: FakeEngine, clock: FakeClock) -> None:
    code, _, output = run(engine, clock, "update", "web", "--image", "app:crash")
    assert code == 1
    assert "ROLLBACK started" in output and "rolled_back" in output


def test_watch_rollback_status(engine: FakeEngine, clock: FakeClock) -> None:
    assert run(engine, clock, "update", "web", "--image", "app:2", "--json")[0] == 0
    code, data, _ = run(engine, clock, "status", "web", "--json")
    assert code == 0 and data["last_rollout"] == "completed" and data["image"] == "app:2"
    code, data, _ = run(engine, clock, "watch", "web", "--json")
    assert code == 0
    code, data, _ = run(engine, clock, "rollback", "web", "--json")
    assert (code, data["code"]) == (0, "rollback_completed")
    assert engine.inspect_service("web").image == "app:1"
    code, _, output = run(engine, clock, "status", "web")
    assert code == 0 and "app:1" in output


def test_ctrl_c_leaves_the_update_running_and_says_how_to_attach(
    engine: FakeEngine, clock: FakeClock
) -> None:
    def interrupt(event: Any) -> None:
        if event.name == "batch_started":
            raise KeyboardInterrupt

    original = clock.sleep

    def sleep(seconds: float) -> None:
        original(seconds)
        if clock.t > 1003:
            raise KeyboardInterrupt

    clock.sleep = sleep  # type: ignore[method-assign]
    code, data, _ = run(engine, clock, "update", "web", "--image", "app:2", "--json")
    assert code == 3
    assert data["outcome"] == "detached"
    assert "zdd-swarm watch web" in data["reason"] and "zdd-swarm rollback web" in data["reason"]
    assert [kind for _, kind, _ in engine.updates] == ["update"]


def test_status_for_people_shows_both_configs_in_compose_form(clock: FakeClock) -> None:
    engine = FakeEngine(clock)
    engine.add_service(
        "web",
        "app:1",
        replicas=2,
        update_config=UpdateConfig(parallelism=2, delay="10s", order="start-first"),
        rollback_config=RollbackConfig(parallelism=0, failure_action="continue"),
    )
    code, _, output = run(engine, clock, "status", "web")
    assert code == 0
    compose = yaml.safe_load(output.split("\n", 2)[2].split("  tasks:")[0])
    assert compose == {
        "update_config": UpdateConfig(parallelism=2, delay="10s", order="start-first").to_compose(),
        "rollback_config": RollbackConfig(parallelism=0, failure_action="continue").to_compose(),
    }
    assert "  update_config:\n    parallelism: 2\n    delay: 10s\n" in output
    assert "  rollback_config:\n    parallelism: 0\n" in output
    assert "{" not in output


CHILD = """
import sys
from zdd_swarm.cli import _Obj, cli
from zdd_swarm.testing import FakeClock, FakeEngine

clock = FakeClock()
engine = FakeEngine(clock)
engine.add_service("web", "app:1", replicas=4)
obj = _Obj(engine_factory=lambda host: engine, clock=clock)
cli.main(args=sys.argv[1:], prog_name="zdd-swarm", obj=obj)
"""


@pytest.mark.parametrize(
    "args",
    [["status", "web"], ["status", "web", "--json"], ["update", "web", "--image", "app:2"]],
)
def test_a_closed_stdout_is_not_an_error(args: list[str]) -> None:
    # as `zdd-swarm status web | head -1` once head has exited
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        child = subprocess.run(
            [sys.executable, "-c", CHILD, *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert child.returncode == 0, child.stderr
    assert child.stderr == ""


def test_max_surge_sets_start_first_and_parallelism(engine: FakeEngine, clock: FakeClock) -> None:
    code, data, _ = run(
        engine,
        clock,
        "update",
        "web",
        "--image",
        "app:2",
        "--max-surge",
        "50%",
        "--max-unavailable",
        "0",
        "--json",
    )
    assert code == 0, data
    spec = engine.inspect_service("web").spec["UpdateConfig"]
    assert (spec["Order"], spec["Parallelism"]) == ("start-first", 2)
    assert data["warnings"] == []


def test_max_unavailable_alone_keeps_kubernetes_default_surge_and_warns(
    engine: FakeEngine, clock: FakeClock
) -> None:
    code, data, _ = run(
        engine, clock, "update", "web", "--image", "app:2", "--max-unavailable", "1", "--json"
    )
    assert code == 0, data
    spec = engine.inspect_service("web").spec["UpdateConfig"]
    assert (spec["Order"], spec["Parallelism"]) == ("start-first", 1)
    assert any(w.startswith("surge-and-unavailable") for w in data["warnings"])


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--max-surge", "0", "--max-unavailable", "0%"], "max_unavailable"),
        (["--max-surge", "lots"], "max_surge"),
        (["--max-unavailable", "150%"], "max_unavailable"),
        (["--max-surge", "1", "--update-parallelism", "2"], "--update-parallelism"),
        (["--max-unavailable", "1", "--update-order", "stop-first"], "--update-order"),
    ],
)
def test_bad_kubernetes_strategy_exits_2_and_sends_nothing(
    engine: FakeEngine, clock: FakeClock, args: list[str], needle: str
) -> None:
    code, data, _ = run(engine, clock, "update", "web", "--image", "app:2", *args, "--json")
    assert code == 2, data
    assert needle in data["reason"]
    assert engine.updates == []


def test_percentages_refused_for_a_global_service(clock: FakeClock) -> None:
    engine = FakeEngine(clock)
    engine.add_service("agent", "app:1", replicas=2, extra={"Mode": {"Global": {}}})
    code, data, _ = run(
        engine, clock, "update", "agent", "--image", "app:2", "--max-surge", "1%", "--json"
    )
    assert code == 2 and "not replicated" in data["reason"]
    assert engine.updates == []


def test_dry_run_shows_what_swarm_cannot_express(engine: FakeEngine, clock: FakeClock) -> None:
    code, data, _ = run(
        engine,
        clock,
        "update",
        "web",
        "--image",
        "app:2",
        "--max-surge",
        "1",
        "--dry-run",
        "--json",
    )
    assert code == 0 and data["update_config"]["order"] == "start-first"
    assert any(w.startswith("surge-and-unavailable") for w in data["warnings"])
    assert engine.updates == []


# -- canary ------------------------------------------------------------------------


def test_steps_run_a_canary(engine: FakeEngine, clock: FakeClock) -> None:
    code, data, _ = run(
        engine,
        clock,
        "update",
        "web",
        "--image",
        "app:2",
        "--step",
        "25%",
        "--step",
        "pause=1m",
        "--step",
        "100%",
        "--json",
    )
    assert code == 0, data
    assert (data["outcome"], data["code"]) == ("completed", "canary_completed")
    assert [s["step"] for s in data["steps"]] == ["25%", "pause 60s", "100%"]
    assert data["steps"][0]["detail"] == "1 of 4 tasks"
    assert [u[2] for u in engine.updates] == ["app:2", "app:2"]


def test_a_canary_that_fails_is_aborted_and_exits_1(engine: FakeEngine, clock: FakeClock) -> None:
    code, _, output = run(
        engine,
        clock,
        "update",
        "web",
        "--image",
        "app:crash",
        "--step",
        "25%",
        "--step",
        "pause=1m",
        "--step",
        "100%",
    )
    assert code == 1, output
    assert "web: canary rolled back" in output
    assert engine.updates[-1][2] == "app:1"


def test_a_steps_file_and_a_compose_extension(
    engine: FakeEngine, clock: FakeClock, tmp_path: Path
) -> None:
    steps = tmp_path / "canary.yml"
    steps.write_text("steps: [50%, {pause: 30s}, 100%]\n")
    code, data, _ = run(
        engine, clock, "update", "web", "--image", "app:2", "--steps-file", str(steps), "--json"
    )
    assert (code, data["outcome"]) == (0, "completed")
    compose = tmp_path / "compose.yml"
    compose.write_text(
        yaml.safe_dump(
            {"services": {"web": {"image": "app:3", "x-zdd-swarm": {"steps": ["25%", "100%"]}}}}
        )
    )
    code, data, _ = run(engine, clock, "update", "web", "--compose", str(compose), "--json")
    assert (code, data["code"]) == (0, "canary_completed")
    assert engine.inspect_service("web").image == "app:3"


def test_a_canary_writes_its_metrics_textfile(
    engine: FakeEngine, clock: FakeClock, tmp_path: Path
) -> None:
    textfile = tmp_path / "zdd.prom"
    steps = ["--step", "50%", "--step", "100%", "--metrics-textfile", str(textfile)]
    code, _, output = run(engine, clock, "update", "web", "--image", "app:2", *steps)
    assert code == 0, output
    text = textfile.read_text()
    assert (
        'zdd_swarm_rollouts_total{code="update_completed",outcome="completed",service="web"} 1.0'
        in text
    )
    assert 'zdd_swarm_canary_step{service="web"} 0.0' in text


def test_a_dry_run_of_a_canary_names_its_steps_and_sends_nothing(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("api", "app:1", replicas=10)
    steps = ["--step", "10%", "--step", "pause=1m", "--step", "3", "--step", "100%"]
    code, _, output = run(engine, clock, "update", "api", "--image", "app:2", *steps, "--dry-run")
    assert code == 0, output
    assert (
        "as a canary: 10% (1 of 10 tasks), pause 60s, 3 tasks (3 of 10 tasks), "
        "100% (10 of 10 tasks)"
    ) in output
    code, data, _ = run(
        engine, clock, "update", "api", "--image", "app:2", *steps, "--dry-run", "--json"
    )
    assert code == 0 and data["canary_steps"][0] == "10% (1 of 10 tasks)"
    assert engine.updates == []


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--step", "10%", "--step", "50%"], "steps[1].set"),
        (["--step", "150%", "--step", "100%"], "steps[0].set"),
        (["--step", "10%", "--step", "analysis=errors", "--step", "100%"], "steps[1].analysis"),
        (["--step", "10%", "--step", "5", "--step", "100%", "--dry-run"], "steps[1].set"),
        (["--step", "100%", "--gate-tcp", "db:5432"], "--gate-tcp"),
        (["--step", "100%", "--task-deadline", "30s"], "--task-deadline"),
    ],
)
def test_a_bad_canary_exits_2_and_sends_nothing(
    engine: FakeEngine, clock: FakeClock, args: list[str], needle: str
) -> None:
    code, data, _ = run(engine, clock, "update", "web", "--image", "app:2", *args, "--json")
    assert code == 2, data
    assert needle in data["reason"]
    assert engine.updates == []
