"""Secret values never appear in logs, events, --json output or errors."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner
from structlog.testing import capture_logs

from zdd_swarm import ConcurrentChange, Controller, RolloutOptions, ServiceChange
from zdd_swarm.cli import _Obj, cli
from zdd_swarm.testing import FakeClock, FakeEngine, ImageBehaviour

SECRET = "s3cr3t-Value-42"


def engine_with_secret(clock: FakeClock) -> FakeEngine:
    engine = FakeEngine(clock)
    engine.add_service(
        "web",
        "app:1",
        replicas=2,
        extra={
            "TaskTemplate": {
                "ContainerSpec": {"Image": "app:1", "Env": [f"DB_PASSWORD={SECRET}"]},
                "ForceUpdate": 0,
            }
        },
    )
    engine.behave("app:crash", ImageBehaviour(fail_after=1.0))
    return engine


def test_no_secret_in_any_output_of_full_runs() -> None:
    clock = FakeClock()
    engine = engine_with_secret(clock)
    outputs: list[str] = []
    runner = CliRunner()
    for args in (
        ["update", "web", "--image", "app:2", "--env-add", f"API_KEY={SECRET}"],
        ["update", "web", "--image", "app:crash"],
        ["status", "web"],
        ["rollback", "web"],
        ["update", "web", "--env-add", f"TOKEN={SECRET}", "--dry-run"],
    ):
        for extra in (["--json", "-vv", "--log-format", "json"], ["-vv"]):
            result = runner.invoke(
                cli, [*args, *extra], obj=_Obj(engine_factory=lambda host: engine, clock=clock)
            )
            outputs += [result.stdout, result.stderr]
            if "--json" in extra:
                json.loads(result.stdout)
    seen: list[Any] = []
    controller = Controller(engine, clock=clock, hooks=[seen.append])
    with capture_logs() as logs:
        controller.update("web", ServiceChange(image="app:crash", env_add={"OTHER": SECRET}))
    outputs += [repr(seen), repr(logs), json.dumps([e.fields() for e in seen], default=str)]
    assert all(SECRET not in text for text in outputs)
    assert any("rolled_back" in text for text in outputs)  # the runs did happen


def test_concurrent_change_error_names_fields_not_values() -> None:
    clock = FakeClock()
    engine = engine_with_secret(clock)
    original = engine.update_service

    def racing(service: Any, spec: Any, *, rollback: bool = False) -> list[str]:
        engine.change_spec(
            "web",
            lambda s: s["TaskTemplate"]["ContainerSpec"].update(
                Env=[f"DB_PASSWORD={SECRET}-rotated"]
            ),
        )
        engine.update_service = original  # type: ignore[method-assign]
        return original(service, spec, rollback=rollback)

    engine.update_service = racing  # type: ignore[method-assign]
    try:
        Controller(engine, clock=clock, options=RolloutOptions()).update(
            "web", ServiceChange(image="app:2")
        )
    except ConcurrentChange as exc:
        assert "TaskTemplate.ContainerSpec.Env" in str(exc)
        assert SECRET not in str(exc)
    else:
        raise AssertionError("expected ConcurrentChange")
