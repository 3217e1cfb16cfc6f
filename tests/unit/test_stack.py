"""Stacks against FakeEngine in simulated time: conversion, waves, one verdict,
the coordinated rollback, and input refused before anything changes."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from zdd_swarm import Controller, RolloutOptions, events
from zdd_swarm.errors import InputError
from zdd_swarm.stack import (
    LABEL_IMAGE,
    LABEL_NAMESPACE,
    ComposeError,
    StackOutcome,
    UnsupportedKey,
    deploy_stack,
    interpolate,
    load_stack,
    plan_stack,
)
from zdd_swarm.testing import FakeClock, FakeEngine, ImageBehaviour

EXAMPLE = Path(__file__).parents[2] / "examples" / "stack"
IMAGES = {"WEB_IMAGE": "app/web:1", "API_IMAGE": "app/api:1", "WORKER_IMAGE": "app/worker:1"}


@pytest.fixture
def stack_dir(tmp_path: Path) -> Path:
    target = tmp_path / "stack"
    shutil.copytree(EXAMPLE, target)
    return target


def deploy(
    engine: FakeEngine,
    clock: FakeClock,
    folder: Path,
    files: tuple[str, ...] = ("compose.yml",),
    **images: str,
) -> Any:
    return deploy_stack(
        [folder / f for f in files],
        "shop",
        engine=engine,
        controller=Controller(engine, clock=clock),
        options=RolloutOptions(task_deadline="30s"),
        environment={**IMAGES, **images},
    )


def specs(engine: FakeEngine) -> dict[str, Any]:
    return {s.spec["Name"]: s.spec for s in engine.services.values()}


# -- conversion ----------------------------------------------------------------


def test_names_and_labels_are_the_docker_clis(stack_dir: Path) -> None:
    stack = load_stack([stack_dir / "compose.yml"], "shop", environment=IMAGES)
    web = stack.services["web"]
    assert web["Name"] == "shop_web"
    assert web["Labels"] == {LABEL_NAMESPACE: "shop", LABEL_IMAGE: "app/web:1"}
    container = web["TaskTemplate"]["ContainerSpec"]
    assert container["Labels"] == {LABEL_NAMESPACE: "shop"}
    assert container["Env"] == ["API_HOST=api", "APP_DRAIN_SECONDS=8", "GREETING=hello"]
    assert container["Configs"][0]["ConfigName"] == "shop_web_conf"
    assert container["Configs"][0]["File"] == {
        "Name": "/etc/web.conf",
        "UID": "0",
        "GID": "0",
        "Mode": 0o444,
    }
    assert container["StopGracePeriod"] == 15_000_000_000
    assert web["TaskTemplate"]["Networks"] == [{"Target": "shop_backend", "Aliases": ["web"]}]
    api_networks = stack.services["api"]["TaskTemplate"]["Networks"]
    assert api_networks == [{"Target": "shop_backend", "Aliases": ["api-internal", "api"]}]
    assert web["UpdateConfig"]["Order"] == "start-first"
    assert stack.services["worker"]["UpdateConfig"]["Order"] == "stop-first"
    assert [(o.kind, o.name) for o in stack.objects] == [
        ("network", "shop_backend"),
        ("secret", "shop_api_token"),
        ("config", "shop_web_conf"),
    ]
    assert stack.waves == [["api", "worker"], ["web"]]


def test_explicit_wave_overrides_depends_on(tmp_path: Path) -> None:
    (tmp_path / "c.yml").write_text(
        "services:\n"
        "  a: {image: 'x:1', x-zdd-swarm: {wave: 2}}\n"
        "  b: {image: 'x:1', depends_on: [a]}\n"
        "  c: {image: 'x:1'}\n"
    )
    stack = load_stack([tmp_path / "c.yml"], "s", environment={})
    # a goes to wave 2; b, which depends on a, after it
    assert stack.waves == [["c"], ["a"], ["b"]]
    assert ("network", "default") in {(o.kind, o.key) for o in stack.objects}


@pytest.mark.parametrize(
    ("template", "env", "expected"),
    [
        ("${A}", {"A": "1"}, "1"),
        ("$A-x", {"A": "1"}, "1-x"),
        ("${A:-d}", {"A": ""}, "d"),
        ("${A-d}", {"A": ""}, ""),
        ("${A-d}", {}, "d"),
        ("${A:?needed}", {"A": "v"}, "v"),
        ("${A?needed}", {"A": ""}, ""),
        ("cost: $$5", {}, "cost: $5"),
    ],
)
def test_interpolation_as_the_docker_cli(template: str, env: dict[str, str], expected: str) -> None:
    assert interpolate(template, env) == expected


@pytest.mark.parametrize(
    ("template", "env", "message"),
    [
        ("${A}", {}, "variable A is not set and has no default"),
        ("${A:?give A}", {"A": ""}, "required variable A is missing a value: give A"),
        ("${A?give A}", {}, "required variable A is missing a value: give A"),
    ],
)
def test_a_variable_without_value_is_refused(
    template: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ComposeError, match=message):
        interpolate(template, env)


def test_dotenv_next_to_the_first_file_fills_the_environment(stack_dir: Path) -> None:
    (stack_dir / ".env").write_text("WEB_IMAGE=from/dotenv:7\n")
    stack = load_stack([stack_dir / "compose.yml"], "shop", environment={"API_IMAGE": "a:1"})
    assert stack.services["web"]["TaskTemplate"]["ContainerSpec"]["Image"] == "from/dotenv:7"
    assert stack.services["api"]["TaskTemplate"]["ContainerSpec"]["Image"] == "a:1"


def test_files_merge_as_the_cli_merges_them(stack_dir: Path) -> None:
    (stack_dir / "override.yml").write_text(
        "services:\n"
        "  web:\n"
        "    image: app/web:2\n"
        "    environment: {GREETING: bye}\n"
        "    deploy: {replicas: 5, labels: {tier: front}}\n"
        "  extra: {image: 'x:1'}\n"
    )
    stack = load_stack(
        [stack_dir / "compose.yml", stack_dir / "override.yml"], "shop", environment=IMAGES
    )
    web = stack.services["web"]
    assert web["TaskTemplate"]["ContainerSpec"]["Image"] == "app/web:2"
    assert "GREETING=bye" in web["TaskTemplate"]["ContainerSpec"]["Env"]
    assert web["Mode"] == {"Replicated": {"Replicas": 5}}
    assert web["Labels"]["tier"] == "front"
    assert web["UpdateConfig"]["Order"] == "start-first"  # kept from the base file
    assert "extra" in stack.services


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("services:\n  web:\n    image: x:1\n    build: .\n", UnsupportedKey, "services.web.build"),
        (
            "services:\n  web:\n    image: x:1\n    deploy: {resources: {limits: {gpus: 1}}}\n",
            UnsupportedKey,
            "services.web.deploy.resources.limits.gpus",
        ),
        ("volumes: {}\nservices: {web: {image: 'x:1'}}\n", UnsupportedKey, "'volumes'"),
        ("services:\n  web: [\n", ComposeError, "line 3, column 1"),
        ("services:\n  'we b': {image: 'x:1'}\n", ComposeError, "invalid service name 'we b'"),
        ("services:\n  web: {image: '${NOPE}'}\n", ComposeError, "variable NOPE is not set"),
        ("services:\n  web: {image: 'x:1', depends_on: [db]}\n", ComposeError, "undefined"),
    ],
)
def test_bad_input_is_refused_before_anything_changes(
    tmp_path: Path,
    engine: FakeEngine,
    clock: FakeClock,
    text: str,
    error: type[Exception],
    message: str,
) -> None:
    (tmp_path / "compose.yml").write_text(text)
    with pytest.raises(error, match=message):
        deploy(engine, clock, tmp_path)
    assert engine.services == {}
    assert engine.requests == 0


def test_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_stack([tmp_path / "nope.yml"], "s", environment={})


# -- deploying -------------------------------------------------------------------


def test_first_deploy_creates_everything(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    result = deploy(engine, clock, stack_dir)
    assert result.outcome is StackOutcome.COMPLETED, result.summary()
    assert result.exit_code == 0
    assert set(specs(engine)) == {"shop_web", "shop_api", "shop_worker"}
    assert [r.action.value for r in result.services] == ["create"] * 3
    names = {kind: [n for n, _, _ in objs.values()] for kind, objs in engine.objects.items()}
    assert names == {
        "network": ["shop_backend"],
        "secret": ["shop_api_token"],
        "config": ["shop_web_conf"],
    }
    api = specs(engine)["shop_api"]
    secret_id = next(iter(engine.objects["secret"]))
    assert api["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretID"] == secret_id
    network_id = next(iter(engine.objects["network"]))
    assert api["TaskTemplate"]["Networks"][0]["Target"] == network_id


def test_a_second_deploy_updates_only_what_changed(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    deploy(engine, clock, stack_dir)
    versions = {s.spec["Name"]: s.version for s in engine.services.values()}
    again = deploy(engine, clock, stack_dir)
    assert [r.outcome for r in again.services] == ["unchanged"] * 3
    result = deploy(engine, clock, stack_dir, WEB_IMAGE="app/web:2")
    assert result.outcome is StackOutcome.COMPLETED
    assert {r.service: r.action.value for r in result.services} == {
        "shop_api": "unchanged",
        "shop_worker": "unchanged",
        "shop_web": "update",
    }
    after = {s.spec["Name"]: s.version for s in engine.services.values()}
    assert after["shop_api"] == versions["shop_api"]
    assert after["shop_web"] > versions["shop_web"]
    assert specs(engine)["shop_web"]["Labels"][LABEL_IMAGE] == "app/web:2"


def test_a_failing_service_puts_the_whole_stack_back(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    deploy(engine, clock, stack_dir)
    before = specs(engine)
    engine.behave("app/web:9", ImageBehaviour(fail_after=1.0))
    # api (wave 0) lands, worker (wave 0) lands, web (wave 1) crashes
    result = deploy(
        engine,
        clock,
        stack_dir,
        WEB_IMAGE="app/web:9",
        API_IMAGE="app/api:2",
        WORKER_IMAGE="app/worker:2",
    )
    assert result.outcome is StackOutcome.ROLLED_BACK, result.summary()
    assert result.exit_code == 1
    outcomes = {r.service: r.outcome for r in result.services}
    assert outcomes == {
        "shop_api": "put_back",
        "shop_worker": "put_back",
        "shop_web": "rolled_back",
    }
    assert specs(engine) == before


def test_a_crash_in_an_early_wave_leaves_later_waves_alone(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    deploy(engine, clock, stack_dir)
    before = specs(engine)
    engine.behave("app/api:bad", ImageBehaviour(fail_after=1.0))
    result = deploy(engine, clock, stack_dir, WEB_IMAGE="app/web:2", API_IMAGE="app/api:bad")
    assert result.exit_code == 1
    outcomes = {r.service: r.outcome for r in result.services}
    assert outcomes["shop_api"] == "rolled_back"
    assert outcomes["shop_web"] == "not_started"
    assert specs(engine) == before


def test_a_new_service_that_never_gets_healthy_is_removed(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    deploy(engine, clock, stack_dir)
    before = specs(engine)
    objects = {kind: dict(objs) for kind, objs in engine.objects.items()}
    (stack_dir / "extra.yml").write_text(
        "services:\n"
        "  cache:\n"
        "    image: app/cache:1\n"
        "    networks: [backend]\n"
        "    x-zdd-swarm: {wave: 1}\n"
        "configs:\n"
        "  cache_conf: {file: ./web.conf}\n"
    )
    engine.behave("app/cache:1", ImageBehaviour(never_ready=True))
    result = deploy_stack(
        [stack_dir / "compose.yml", stack_dir / "extra.yml"],
        "shop",
        engine=engine,
        controller=Controller(engine, clock=clock),
        options=RolloutOptions(task_deadline="30s"),
        environment={**IMAGES, "API_IMAGE": "app/api:2"},
    )
    assert result.exit_code == 1, result.summary()
    outcomes = {r.service: r.outcome for r in result.services}
    assert outcomes["shop_cache"] == "removed"
    assert outcomes["shop_api"] == "put_back"
    assert specs(engine) == before
    assert {kind: dict(objs) for kind, objs in engine.objects.items()} == objects


def test_dry_run_plans_without_changing(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    deploy(engine, clock, stack_dir)
    requests = len(engine.updates)
    plan = plan_stack(
        [stack_dir / "compose.yml"],
        "shop",
        engine=engine,
        environment={**IMAGES, "WEB_IMAGE": "app/web:3"},
    )
    text = "\n".join(plan.lines())
    assert (
        "update shop_web (Labels.com.docker.stack.image, TaskTemplate.ContainerSpec.Image)" in text
    )
    assert "unchanged shop_api" in text
    assert plan.estimated_seconds > 0 and text.startswith(
        f"stack shop: expected {plan.estimated_seconds:.0f}s"
    )
    assert len(engine.updates) == requests


def test_an_update_in_progress_is_refused_before_anything_changes(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    deploy(engine, clock, stack_dir)
    engine.behave("app/web:slow", ImageBehaviour(start=100))
    web = engine.inspect_service("shop_web")
    spec = dict(web.spec)
    spec["TaskTemplate"] = {**spec["TaskTemplate"]}
    spec["TaskTemplate"]["ContainerSpec"] = {
        **spec["TaskTemplate"]["ContainerSpec"],
        "Image": "app/web:slow",
    }
    engine.update_service(web, spec)
    updates = len(engine.updates)
    with pytest.raises(InputError, match="already in progress"):
        deploy(engine, clock, stack_dir, WEB_IMAGE="app/web:2")
    assert len(engine.updates) == updates


# -- the CLI -----------------------------------------------------------------------


def cli_deploy(engine: FakeEngine, clock: FakeClock, *args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from zdd_swarm.cli import _Obj, cli

    result = CliRunner().invoke(
        cli,
        ["stack", "deploy", *args],
        obj=_Obj(engine_factory=lambda host: engine, clock=clock),
    )
    return result.exit_code, result.output


def test_cli_exit_codes_0_1_and_2(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in IMAGES.items():
        monkeypatch.setenv(key, value)
    compose = str(stack_dir / "compose.yml")
    code, output = cli_deploy(engine, clock, "-c", compose, "shop", "--task-deadline", "30s")
    assert code == 0, output
    assert "stack shop: completed" in output
    engine.behave("app/api:bad", ImageBehaviour(fail_after=1.0))
    monkeypatch.setenv("API_IMAGE", "app/api:bad")
    code, output = cli_deploy(engine, clock, "-c", compose, "shop", "--json")
    assert code == 1, output
    data = json.loads(output[output.index("{") :])
    assert data["outcome"] == "rolled_back"
    assert {s["service"]: s["outcome"] for s in data["services"]}["shop_api"] == "rolled_back"
    versions = {s.id: s.version for s in engine.services.values()}
    for args in (
        ["-c", str(stack_dir / "missing.yml"), "shop"],
        ["-c", compose, "shop", "--resolve-image", "sometimes"],
        ["-c", compose, "bad name"],
    ):
        code, output = cli_deploy(engine, clock, *args)
        assert code == 2, output
    monkeypatch.delenv("WEB_IMAGE")
    (stack_dir / "strict.yml").write_text("services:\n  web: {image: '${NOPE:?set NOPE}'}\n")
    code, output = cli_deploy(engine, clock, "-c", str(stack_dir / "strict.yml"), "shop")
    assert code == 2 and "required variable NOPE is missing a value: set NOPE" in output
    assert {s.id: s.version for s in engine.services.values()} == versions


def test_cli_dry_run_prints_the_plan(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in IMAGES.items():
        monkeypatch.setenv(key, value)
    code, output = cli_deploy(
        engine, clock, "-c", str(stack_dir / "compose.yml"), "shop", "--dry-run"
    )
    assert code == 0, output
    assert "create secret shop_api_token" in output
    assert "wave 1:\n    create shop_web" in output
    assert engine.services == {}


def test_no_secret_value_is_printed(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in IMAGES.items():
        monkeypatch.setenv(key, value)
    compose = str(stack_dir / "compose.yml")
    for extra in ([], ["--json"], ["--dry-run"], ["-vv"]):
        code, output = cli_deploy(engine, clock, "-c", compose, "shop", *extra)
        assert code == 0, output
        assert "example-token-for-the-example-only" not in output


def test_the_stack_deploy_example_lands_and_puts_back(
    engine: FakeEngine, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    path = EXAMPLE.parent / "stack_deploy.py"
    spec = importlib.util.spec_from_file_location("example_stack_deploy", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    controller = Controller(engine, clock=clock)
    result = example.deploy("shop", engine=engine, controller=controller, environment=IMAGES)
    assert result.exit_code == 0
    engine.behave("app/api:bad", ImageBehaviour(fail_after=1.0))
    bad = {**IMAGES, "API_IMAGE": "app/api:bad"}
    result = example.deploy("shop", engine=engine, controller=controller, environment=bad)
    assert result.exit_code == 1
    assert "wave 0 shop_api: update -> rolled_back" in capsys.readouterr().out


# -- a deploy whose process died: stack watch ---------------------------------------


class Killed(BaseException):
    """The deploying process dies (nothing of it runs any more)."""


def kill_at(service: str, phase: str = "update") -> Any:
    from zdd_swarm import events

    def hook(event: Any) -> None:
        if (
            isinstance(event, events.BatchStarted)
            and event.service == service
            and event.phase == phase
        ):
            raise Killed

    return hook


def deploy_killed(
    engine: FakeEngine, clock: FakeClock, folder: Path, hook: Any, **images: str
) -> None:
    with pytest.raises(Killed):
        deploy_stack(
            [folder / "compose.yml"],
            "shop",
            engine=engine,
            controller=Controller(engine, clock=clock, hooks=[hook]),
            options=RolloutOptions(task_deadline="30s"),
            environment={**IMAGES, **images},
        )


def watch(engine: FakeEngine, clock: FakeClock) -> Any:
    from zdd_swarm.stack import watch_stack

    return watch_stack(
        "shop",
        engine=engine,
        controller=Controller(engine, clock=clock),
        options=RolloutOptions(task_deadline="30s"),
    )


def test_watch_without_a_deploy_in_flight_has_nothing_to_do(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    deploy(engine, clock, stack_dir)
    result = watch(engine, clock)
    assert result.exit_code == 0 and result.reason == "no stack deploy in flight"


def test_watch_finishes_a_deploy_killed_in_its_last_service(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    deploy(engine, clock, stack_dir)
    deploy_killed(
        engine, clock, stack_dir, kill_at("shop_web"), WEB_IMAGE="app/web:2", API_IMAGE="app/api:2"
    )
    assert any(n == "shop_zdd-swarm-deploy" for n, _, _ in engine.objects["config"].values())
    result = watch(engine, clock)
    assert result.outcome is StackOutcome.COMPLETED, result.summary()
    assert {r.service: r.outcome for r in result.services} == {
        "shop_api": "completed",
        "shop_web": "completed",
    }
    assert specs(engine)["shop_web"]["TaskTemplate"]["ContainerSpec"]["Image"] == "app/web:2"
    assert not any(n == "shop_zdd-swarm-deploy" for n, _, _ in engine.objects["config"].values())


def test_watch_puts_back_a_deploy_killed_before_its_last_wave(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    deploy(engine, clock, stack_dir)
    before = specs(engine)
    deploy_killed(
        engine, clock, stack_dir, kill_at("shop_api"), WEB_IMAGE="app/web:2", API_IMAGE="app/api:2"
    )
    result = watch(engine, clock)
    assert result.outcome is StackOutcome.ROLLED_BACK, result.summary()
    assert "stopped before shop_web rolled" in result.reason
    assert specs(engine) == before


def test_watch_carries_on_a_put_back_already_started(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    deploy(engine, clock, stack_dir)
    before = specs(engine)
    objects = {kind: dict(objs) for kind, objs in engine.objects.items()}
    engine.behave("app/web:bad", ImageBehaviour(fail_after=1.0))
    compose = (stack_dir / "compose.yml").read_text()
    (stack_dir / "compose.yml").write_text(
        compose.replace("services:\n", "services:\n  cache:\n    image: app/cache:1\n", 1)
    )
    # api and worker land, cache is created, web fails; killed while api is put back
    deploy_killed(
        engine,
        clock,
        stack_dir,
        kill_at("shop_api", phase="rollback"),
        WEB_IMAGE="app/web:bad",
        API_IMAGE="app/api:2",
        WORKER_IMAGE="app/worker:2",
    )
    result = watch(engine, clock)
    assert result.outcome is StackOutcome.ROLLED_BACK, result.summary()
    outcomes = {r.service: r.outcome for r in result.services}
    assert outcomes["shop_cache"] == "removed"
    assert outcomes["shop_api"] == "put_back"
    assert specs(engine) == before
    assert {kind: dict(objs) for kind, objs in engine.objects.items()} == objects


def test_cli_stack_watch_puts_back_with_exit_1(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    from click.testing import CliRunner

    from zdd_swarm.cli import _Obj, cli

    deploy(engine, clock, stack_dir)
    before = specs(engine)
    deploy_killed(
        engine, clock, stack_dir, kill_at("shop_api"), WEB_IMAGE="app/web:2", API_IMAGE="app/api:2"
    )
    run = CliRunner().invoke(
        cli,
        ["stack", "watch", "shop", "--json"],
        obj=_Obj(engine_factory=lambda host: engine, clock=clock),
    )
    assert run.exit_code == 1, run.output
    assert json.loads(run.output[run.output.index("{") :])["outcome"] == "rolled_back"
    assert specs(engine) == before


# -- prune and resolve-image ------------------------------------------------------


def deploy_with(
    engine: FakeEngine, clock: FakeClock, compose: Path, hooks: Any = (), **kwargs: Any
) -> Any:
    """A deploy of ``compose`` with ``deploy_stack``'s keywords; images given
    as ``WEB_IMAGE=...`` and the like."""
    images = {k: kwargs.pop(k) for k in list(kwargs) if k.endswith("_IMAGE")}
    return deploy_stack(
        [compose],
        "shop",
        engine=engine,
        controller=Controller(engine, clock=clock, hooks=hooks),
        options=RolloutOptions(task_deadline="30s"),
        environment={**IMAGES, **images},
        **kwargs,
    )


def without_worker(folder: Path) -> Path:
    compose = folder / "compose.yml"
    text = compose.read_text()
    compose.write_text(text[: text.index("  worker:")] + text[text.index("\nnetworks:") + 1 :])
    return compose


def test_prune_removes_services_the_files_no_longer_name_once_the_rest_landed(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    deploy(engine, clock, stack_dir)
    compose = without_worker(stack_dir)
    plan = plan_stack([compose], "shop", engine=engine, environment=IMAGES, prune=True)
    assert "  once every change landed, remove: shop_worker" in plan.lines()
    kept = deploy_with(engine, clock, compose)
    assert set(specs(engine)) == {"shop_web", "shop_api", "shop_worker"}, kept.summary()
    result = deploy_with(engine, clock, compose, WEB_IMAGE="app/web:2", prune=True)
    assert result.outcome is StackOutcome.COMPLETED, result.summary()
    assert {r.service: r.outcome for r in result.services}["shop_worker"] == "removed"
    assert set(specs(engine)) == {"shop_web", "shop_api"}


def test_prune_leaves_everything_when_the_deploy_is_put_back(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    deploy(engine, clock, stack_dir)
    compose = without_worker(stack_dir)
    engine.behave("app/web:9", ImageBehaviour(fail_after=1.0))
    result = deploy_with(engine, clock, compose, WEB_IMAGE="app/web:9", prune=True)
    assert result.outcome is StackOutcome.ROLLED_BACK, result.summary()
    assert {r.service: r.outcome for r in result.services}["shop_worker"] == "not_started"
    assert "shop_worker" in specs(engine)


@pytest.mark.parametrize(
    ("policy", "pinned"),
    [
        ("always", {"shop_web", "shop_api", "shop_worker"}),
        ("changed", {"shop_web"}),
        ("never", set()),
    ],
)
def test_resolve_image_pins_digests_as_docker_stack_deploy(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock, policy: str, pinned: set[str]
) -> None:
    deploy(engine, clock, stack_dir)
    compose = stack_dir / "compose.yml"
    result = deploy_with(engine, clock, compose, WEB_IMAGE="app/web:2", resolve_image=policy)
    assert result.outcome is StackOutcome.COMPLETED, result.summary()
    for name, spec in specs(engine).items():
        template = spec["TaskTemplate"]
        image = template["ContainerSpec"]["Image"]
        assert ("@sha256:" in image) is (name in pinned), (name, image)
        if name in pinned:
            assert image.startswith(spec["Labels"][LABEL_IMAGE] + "@sha256:")
            assert template["Placement"]["Platforms"] == [{"Architecture": "amd64", "OS": "linux"}]


def test_resolve_image_changed_keeps_a_pinned_image_that_did_not_change(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    compose = stack_dir / "compose.yml"
    deploy_with(engine, clock, compose, resolve_image="changed")
    pinned = specs(engine)["shop_api"]["TaskTemplate"]["ContainerSpec"]["Image"]
    assert "@sha256:" in pinned
    again = deploy_with(engine, clock, compose, WEB_IMAGE="app/web:2", resolve_image="changed")
    assert {r.service: r.action.value for r in again.services}["shop_api"] == "unchanged"
    assert specs(engine)["shop_api"]["TaskTemplate"]["ContainerSpec"]["Image"] == pinned


def test_an_unknown_resolve_image_policy_is_refused(stack_dir: Path, engine: FakeEngine) -> None:
    with pytest.raises(InputError, match="resolve_image"):
        plan_stack([stack_dir / "compose.yml"], "shop", engine=engine, resolve_image="sometimes")
    assert not engine.services


def test_the_services_of_one_wave_roll_together(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    deploy(engine, clock, stack_dir)
    # each rollout of wave 0 (api and worker) waits at its start for the
    # other: the barrier opens only if both are in flight at once
    barrier = threading.Barrier(2, timeout=10)
    met: list[str] = []

    def hook(event: Any) -> None:
        if isinstance(event, events.RolloutStarted):
            barrier.wait()
            met.append(event.service)

    result = deploy_with(
        engine,
        clock,
        stack_dir / "compose.yml",
        [hook],
        API_IMAGE="app/api:2",
        WORKER_IMAGE="app/worker:2",
    )
    assert result.outcome is StackOutcome.COMPLETED, result.summary()
    assert sorted(met) == ["shop_api", "shop_worker"]


def test_a_failure_in_a_wave_puts_back_the_service_that_landed_beside_it(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    deploy(engine, clock, stack_dir)
    before = specs(engine)
    engine.behave("app/api:9", ImageBehaviour(fail_after=1.0))
    result = deploy(engine, clock, stack_dir, API_IMAGE="app/api:9", WORKER_IMAGE="app/worker:2")
    assert result.outcome is StackOutcome.ROLLED_BACK, result.summary()
    outcomes = {r.service: r.outcome for r in result.services}
    assert outcomes == {
        "shop_api": "rolled_back",
        "shop_worker": "put_back",
        "shop_web": "unchanged",
    }
    assert result.reason.startswith("shop_api failed: ")
    assert specs(engine) == before


# -- canaries (x-zdd-swarm steps) ---------------------------------------------------

API_CANARY = "services:\n  api:\n    x-zdd-swarm:\n      steps: ['50%', '100%']\n"


def deploy_with_canary(engine: FakeEngine, clock: FakeClock, folder: Path, **images: str) -> Any:
    (folder / "canary.yml").write_text(API_CANARY)
    return deploy(engine, clock, folder, ("compose.yml", "canary.yml"), **images)


def test_a_service_with_steps_goes_out_as_a_canary(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    deploy_with_canary(engine, clock, stack_dir)
    before = specs(engine)["shop_api"]
    result = deploy_with_canary(engine, clock, stack_dir, API_IMAGE="app/api:2")
    assert result.outcome is StackOutcome.COMPLETED, result.summary()
    api = next(r for r in result.services if r.service == "shop_api")
    assert api.outcome == "completed" and api.reason.startswith("canary completed")
    sent = [image for name, _kind, image in engine.updates if name == engine._find("shop_api").id]
    assert sent == ["app/api:2", "app/api:2"]  # 50 %, held by Swarm; then 100 %
    after = specs(engine)["shop_api"]
    assert after["UpdateConfig"] == before["UpdateConfig"]
    assert after["TaskTemplate"]["ContainerSpec"]["Image"] == "app/api:2"


def test_the_plan_names_the_canary_steps(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    deploy_with_canary(engine, clock, stack_dir)
    plan = plan_stack(
        [stack_dir / "compose.yml", stack_dir / "canary.yml"],
        "shop",
        engine=engine,
        environment={**IMAGES, "API_IMAGE": "app/api:2"},
    )
    api = next(line for line in plan.lines() if "shop_api" in line)
    assert "as a canary: 50%, 100%" in api, plan.lines()


def test_a_canary_that_fails_puts_the_whole_stack_back(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    deploy_with_canary(engine, clock, stack_dir)
    before = specs(engine)
    engine.behave("app/api:9", ImageBehaviour(fail_after=1.0))
    result = deploy_with_canary(
        engine, clock, stack_dir, API_IMAGE="app/api:9", WORKER_IMAGE="app/worker:2"
    )
    assert result.outcome is StackOutcome.ROLLED_BACK, result.summary()
    outcomes = {r.service: r.outcome for r in result.services}
    assert outcomes["shop_api"] == "rolled_back" and outcomes["shop_worker"] == "put_back"
    assert specs(engine) == before


def test_a_canary_that_landed_is_put_back_to_its_spec_before_the_deploy(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    # after a canary the previous spec is its last step's (the new release):
    # the put-back sends the spec from before the deploy instead
    deploy_with_canary(engine, clock, stack_dir)
    before = specs(engine)
    engine.behave("app/web:9", ImageBehaviour(fail_after=1.0))
    result = deploy_with_canary(
        engine, clock, stack_dir, API_IMAGE="app/api:2", WEB_IMAGE="app/web:9"
    )
    assert result.outcome is StackOutcome.ROLLED_BACK, result.summary()
    outcomes = {r.service: r.outcome for r in result.services}
    assert outcomes == {
        "shop_api": "put_back",
        "shop_worker": "unchanged",
        "shop_web": "rolled_back",
    }
    assert specs(engine) == before


def test_bad_steps_are_refused_before_anything_changes(
    stack_dir: Path, engine: FakeEngine, clock: FakeClock
) -> None:
    deploy_with_canary(engine, clock, stack_dir)
    before = specs(engine)
    (stack_dir / "canary.yml").write_text(API_CANARY.replace("'50%'", "'150%'"))
    with pytest.raises(InputError, match="x-zdd-swarm"):
        deploy(engine, clock, stack_dir, ("compose.yml", "canary.yml"), API_IMAGE="app/api:2")
    assert specs(engine) == before
