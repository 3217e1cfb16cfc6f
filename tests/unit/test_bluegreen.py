"""Blue-green on the fake engine, in simulated time."""

from __future__ import annotations

import json
from typing import Any

import pytest

from zdd_swarm import ConfigError, Controller, InputError, RolloutOptions, UpdateInProgress
from zdd_swarm.bluegreen import (
    BlueGreen,
    BlueGreenOptions,
    BlueGreenOutcome,
    CallableRouter,
    Colour,
    LabelRouter,
    PairState,
    Stage,
)
from zdd_swarm.bluegreen.flow import advance
from zdd_swarm.bluegreen.model import (
    LABEL_ACTIVE,
    LABEL_FAILED,
    LABEL_LOCK,
    LABEL_ROUTER,
    CheckCount,
    colour_spec,
)
from zdd_swarm.gates import CallableGate
from zdd_swarm.testing import FakeClock, FakeEngine, ImageBehaviour

ROUTE = "traefik.http.routers.web"
RICH: dict[str, Any] = {
    "Labels": {"team": "web", f"{ROUTE}.rule": "Host(`web`)", "traefik.enable": "true"},
    "TaskTemplate": {
        "ContainerSpec": {
            "Image": "app:1",
            "Env": ["A=1", "SECRET=s"],
            "Mounts": [{"Type": "volume", "Source": "data", "Target": "/data"}],
            "Secrets": [{"SecretID": "s1", "SecretName": "pw", "File": {"Name": "pw"}}],
            "Configs": [{"ConfigID": "c1", "ConfigName": "cfg", "File": {"Name": "/c"}}],
            "Labels": {"owner": "ops"},
        },
        "Networks": [{"Target": "net1", "Aliases": ["web"]}],
        "Resources": {"Limits": {"MemoryBytes": 64 << 20}},
        "ForceUpdate": 0,
    },
}


def setup(
    engine: FakeEngine, clock: FakeClock, replicas: int = 3, **options: Any
) -> tuple[BlueGreen, LabelRouter]:
    engine.add_service("web-blue", "app:1", replicas=replicas, extra=RICH)
    router = LabelRouter(engine, "web", [ROUTE])
    controller = Controller(engine, clock=clock)
    rollout = RolloutOptions(task_deadline="30s")
    return BlueGreen(router, controller, BlueGreenOptions(**options), rollout), router


def labels(engine: FakeEngine, name: str) -> dict[str, str]:
    return dict(engine.inspect_service(name).spec.get("Labels") or {})


def task_ids(engine: FakeEngine, name: str) -> set[str]:
    view = engine.inspect_service(name)
    return {t.id for t in engine.list_tasks(view.id) if t.running}


def test_the_decision_table() -> None:
    assert advance(Stage.PREVIEW, True) is Stage.SWITCH
    assert advance(Stage.PREVIEW, True, auto_promote=False) is Stage.AWAIT_PROMOTE
    assert advance(Stage.PREVIEW, False) is Stage.SCALE_DOWN_IDLE
    assert advance(Stage.SCALE_UP, False) is Stage.SCALE_DOWN_IDLE
    assert advance(Stage.POST_SWITCH, False) is Stage.SWITCH_BACK
    assert advance(Stage.VERIFY, False) is Stage.SWITCH_BACK
    assert advance(Stage.SWITCH_BACK, True) is Stage.SCALE_DOWN_IDLE
    assert advance(Stage.POST_SWITCH, True) is Stage.SCALE_DOWN_DELAY


def test_a_good_release_switches_and_scales_the_old_colour_down(
    engine: FakeEngine, clock: FakeClock
) -> None:
    bg, router = setup(engine, clock)
    blue_tasks = task_ids(engine, "web-blue")
    result = bg.deploy("web", "app:2")
    assert result.outcome is BlueGreenOutcome.SWITCHED, result.summary()
    assert result.exit_code == 0
    assert result.active is Colour.GREEN and router.active() is Colour.GREEN
    green = engine.inspect_service("web-green")
    assert green.image == "app:2" and green.replicas == 3
    assert labels(engine, "web-green")[f"{ROUTE}.rule"] == "Host(`web`)"
    assert f"{ROUTE}.rule" not in labels(engine, "web-blue")
    assert engine.inspect_service("web-blue").replicas == 0
    assert labels(engine, "web-blue")[LABEL_ACTIVE] == "green"
    assert result.switch_s is not None
    assert "scale_down_old" in result.steps
    # the label moves restarted nothing: blue's tasks ran until it was scaled down
    assert blue_tasks


def test_nothing_the_user_had_is_lost_in_the_colour_copy(
    engine: FakeEngine, clock: FakeClock
) -> None:
    bg, _ = setup(engine, clock)
    before = engine.inspect_service("web-blue").spec
    bg.deploy("web", "app:2")
    after = engine.inspect_service("web-green").spec
    for key in ("TaskTemplate", "UpdateConfig", "RollbackConfig", "EndpointSpec"):
        want = dict(before[key])
        have = dict(after[key])
        if key == "TaskTemplate":
            want["ContainerSpec"] = {**want["ContainerSpec"], "Image": "app:2"}
        assert have == want, key
    user_labels = {k: v for k, v in after["Labels"].items() if not k.startswith("zdd-swarm.")}
    assert user_labels == before["Labels"]  # the route moved with the switch


def test_the_colour_copy_leaves_out_the_routes_and_our_state() -> None:
    source = {"Name": "web-blue", "Labels": {"a": "1", f"{ROUTE}.rule": "x", LABEL_ACTIVE: "blue"}}
    spec = colour_spec(
        source,
        "web",
        Colour.GREEN,
        image="app:2",
        replicas=2,
        routes=LabelRouter(None, "web", [ROUTE]).routes,
    )  # type: ignore[arg-type]
    assert spec["Name"] == "web-green"
    assert spec["Labels"]["a"] == "1" and f"{ROUTE}.rule" not in spec["Labels"]
    assert spec["Mode"] == {"Replicated": {"Replicas": 2}}
    assert spec["TaskTemplate"]["ContainerSpec"]["Image"] == "app:2"


def test_a_label_switch_restarts_no_task(engine: FakeEngine, clock: FakeClock) -> None:
    bg, router = setup(engine, clock, scale_down_delay="1h")
    bg.deploy("web", "app:2")  # waits out the delay in simulated time
    blue = engine.inspect_service("web-blue")
    engine.update_service(blue, {**blue.spec, "Mode": {"Replicated": {"Replicas": 3}}})
    clock.sleep(5)
    before = task_ids(engine, "web-blue") | task_ids(engine, "web-green")
    router.switch(Colour.BLUE)
    assert router.switched(Colour.BLUE)
    assert task_ids(engine, "web-blue") | task_ids(engine, "web-green") == before


def test_a_bad_preview_never_switches(engine: FakeEngine, clock: FakeClock) -> None:
    seen: list[Any] = []
    gate = CallableGate(lambda: False, name="preview")
    bg, router = setup(engine, clock, preview_checks=[gate])
    bg.controller.hooks.append(seen.append)
    result = bg.deploy("web", "app:2")
    assert result.outcome is BlueGreenOutcome.NOT_SWITCHED and result.exit_code == 1
    assert result.code == "preview_check_failed"
    assert "preview" in result.reason.message
    assert router.active() is Colour.BLUE and result.active is Colour.BLUE
    assert engine.inspect_service("web-green").replicas == 0
    assert engine.inspect_service("web-blue").replicas == 3
    assert labels(engine, "web-green")[LABEL_FAILED] == "app:2"
    assert "switch" not in result.steps
    assert [e.stage for e in seen if e.name == "blue_green_stage"][-1] == "scale_down_idle"


def test_an_unhealthy_release_never_switches(engine: FakeEngine, clock: FakeClock) -> None:
    engine.behave("app:bad", ImageBehaviour(fail_after=1.0))
    bg, router = setup(engine, clock)
    result = bg.deploy("web", "app:bad")
    assert result.outcome is BlueGreenOutcome.NOT_SWITCHED
    assert result.code == "idle_unhealthy"
    assert result.rollout is not None and not result.rollout.outcome.ok
    assert router.active() is Colour.BLUE
    assert engine.inspect_service("web-green").replicas == 0


def test_a_post_switch_failure_switches_back_at_once(engine: FakeEngine, clock: FakeClock) -> None:
    gate = CallableGate(lambda: False, name="errors")
    bg, router = setup(engine, clock, post_switch_checks=[gate])
    result = bg.deploy("web", "app:2")
    assert result.outcome is BlueGreenOutcome.SWITCHED_BACK and result.exit_code == 1
    assert result.code == "post_switch_check_failed"
    assert router.active() is Colour.BLUE and result.active is Colour.BLUE
    assert labels(engine, "web-blue")[LABEL_ACTIVE] == "blue"
    assert engine.inspect_service("web-blue").replicas == 3
    assert engine.inspect_service("web-green").replicas == 0
    assert result.steps[-2:] == ["switch_back", "scale_down_idle"]
    assert result.switch_back_s is not None


def test_the_failed_check_requests_are_counted_in_the_result_and_the_events(
    engine: FakeEngine, clock: FakeClock
) -> None:
    answers = iter([True, True, False])
    gate = CallableGate(lambda: next(answers), name="errors")
    seen: list[Any] = []
    bg, _ = setup(engine, clock, post_switch_checks=[gate], post_switch_window="1m")
    bg.controller.hooks.append(seen.append)
    result = bg.deploy("web", "app:2")
    assert result.code == "post_switch_check_failed"
    assert result.checks["post_switch"] == CheckCount(samples=3, failed=1)
    assert "1 of 3 check requests failed" in result.reason.message
    assert result.to_dict()["checks"] == {"post_switch": {"samples": 3, "failed": 1}}
    (event,) = [e for e in seen if e.name == "blue_green_stage" and e.stage == "post_switch"]
    assert (event.ok, event.samples, event.failed) == (False, 3, 1)


def test_rollback_switches_back_to_the_standby(engine: FakeEngine, clock: FakeClock) -> None:
    bg, router = setup(engine, clock)
    bg.deploy("web", "app:2")
    assert engine.inspect_service("web-blue").replicas == 0
    result = bg.rollback("web")
    assert result.outcome is BlueGreenOutcome.SWITCHED, result.summary()
    assert result.code == "rolled_back"
    assert router.active() is Colour.BLUE
    assert engine.inspect_service("web-blue").image == "app:1"
    assert engine.inspect_service("web-blue").replicas == 3
    assert engine.inspect_service("web-green").replicas == 0


def test_rollback_refuses_a_failed_release(engine: FakeEngine, clock: FakeClock) -> None:
    bg, _ = setup(engine, clock, preview_checks=[CallableGate(lambda: False, name="p")])
    bg.deploy("web", "app:2")
    with pytest.raises(InputError, match="failed"):
        bg.rollback("web")


def test_without_auto_promote_it_waits_for_promote(engine: FakeEngine, clock: FakeClock) -> None:
    bg, router = setup(engine, clock, auto_promote=False)
    result = bg.deploy("web", "app:2")
    assert result.outcome is BlueGreenOutcome.AWAITING_PROMOTE and result.exit_code == 0
    assert router.active() is Colour.BLUE
    assert bg.status("web").state.preview is Colour.GREEN
    promoted = bg.promote("web")
    assert promoted.outcome is BlueGreenOutcome.SWITCHED
    assert router.active() is Colour.GREEN
    assert bg.status("web").state.preview is None


def test_the_state_is_read_from_the_labels_by_another_process(
    engine: FakeEngine, clock: FakeClock
) -> None:
    bg, router = setup(engine, clock)
    bg.deploy("web", "app:2")
    other = BlueGreen(router, Controller(engine, clock=clock))
    state = other.status("web").state
    assert state.active is Colour.GREEN and state.seq > 0
    assert PairState.from_labels(labels(engine, "web-blue")) == state


def test_a_callable_router(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("api-blue", "app:1", extra={"Labels": {}})
    where = {"to": Colour.BLUE}
    router = CallableRouter(lambda c: where.update(to=c), lambda: where["to"])
    result = BlueGreen(router, Controller(engine, clock=clock)).deploy("api", "app:2")
    assert result.outcome is BlueGreenOutcome.SWITCHED
    assert where["to"] is Colour.GREEN


def test_a_switch_that_does_not_take_effect_is_switched_back(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("api-blue", "app:1", extra={"Labels": {}})
    where = {"to": Colour.BLUE}
    router = CallableRouter(
        lambda c: where.update(to=c), lambda: where["to"], verify=lambda c: c is Colour.BLUE
    )
    result = BlueGreen(router, Controller(engine, clock=clock)).deploy("api", "app:2")
    assert result.outcome is BlueGreenOutcome.SWITCHED_BACK
    assert result.code == "switch_not_effective"
    assert where["to"] is Colour.BLUE


@pytest.mark.parametrize(
    ("arrange", "message"),
    [
        (lambda e: None, "neither web-blue nor web-green"),
        (lambda e: e.add_service("web-green", "app:1", extra={"Labels": {}}), "both exist"),
        (
            lambda e: e.add_service(
                "web-blue", "app:1", extra={"Labels": {"zdd-swarm.canary.step": "1"}}
            ),
            "another strategy",
        ),
        (
            lambda e: e.add_service(
                "web-blue",
                "app:1",
                extra={"EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": 80}]}},
            ),
            "publishes ports",
        ),
    ],
)
def test_bad_input_changes_nothing(
    engine: FakeEngine, clock: FakeClock, arrange: Any, message: str
) -> None:
    if message == "both exist":
        engine.add_service("web-blue", "app:1", extra={"Labels": {f"{ROUTE}.rule": "x"}})
    arrange(engine)
    bg = BlueGreen(LabelRouter(engine, "web", [ROUTE]), Controller(engine, clock=clock))
    updates = list(engine.updates)
    with pytest.raises(InputError, match=message):
        bg.deploy("web", "app:2")
    assert engine.updates == updates


def test_a_missing_or_renamed_colour_is_bad_input(engine: FakeEngine, clock: FakeClock) -> None:
    bg, _ = setup(engine, clock)
    bg.deploy("web", "app:2")
    green = engine.inspect_service("web-green")
    engine.services[green.id].spec["Name"] = "web-new"
    with pytest.raises(InputError, match="renamed"):
        bg.deploy("web", "app:3")
    engine.remove_service("web-new")
    with pytest.raises(InputError, match="missing"):
        bg.deploy("web", "app:3")


def test_an_unknown_router_service_is_bad_input(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web-blue", "app:1", extra=RICH)
    router = LabelRouter(engine, "web", [ROUTE], router_service="traefik")
    with pytest.raises(InputError, match="router service 'traefik' not found"):
        BlueGreen(router, Controller(engine, clock=clock)).deploy("web", "app:2")
    assert engine.updates == []


def test_a_router_that_disagrees_with_the_state_is_bad_input(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web-blue", "app:1", extra={"Labels": {}})
    with pytest.raises(InputError, match="router sends traffic to no one colour"):
        BlueGreen(LabelRouter(engine, "web", [ROUTE]), Controller(engine, clock=clock)).deploy(
            "web", "app:2"
        )


def cli_run(engine: FakeEngine, clock: FakeClock, *args: str) -> tuple[int, Any]:
    from click.testing import CliRunner

    from zdd_swarm.cli import _Obj, cli

    obj = _Obj(engine_factory=lambda host: engine, clock=clock)
    result = CliRunner().invoke(cli, ["bluegreen", *args, "--router", f"labels:{ROUTE}"], obj=obj)
    data = json.loads(result.stdout) if "--json" in args else result.output
    return result.exit_code, data


def test_cli_deploy_status_rollback(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web-blue", "app:1", replicas=2, extra=RICH)
    code, data = cli_run(engine, clock, "deploy", "web", "--image", "app:2", "--json")
    assert code == 0 and data["outcome"] == "switched" and data["active"] == "green"
    code, data = cli_run(engine, clock, "status", "web", "--json")
    assert code == 0 and data["active"] == "green" and data["router"] == "green"
    assert data["lock"] is None
    assert data["services"]["green"]["image"] == "app:2"
    code, text = cli_run(engine, clock, "status", "web")
    assert code == 0 and "active green" in text
    code, data = cli_run(engine, clock, "rollback", "web", "--json")
    assert code == 0 and data["code"] == "rolled_back" and data["active"] == "blue"


def test_cli_exit_codes(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web-blue", "app:1", replicas=2, extra=RICH)
    engine.behave("app:bad", ImageBehaviour(fail_after=1.0))
    code, data = cli_run(engine, clock, "deploy", "web", "--image", "app:bad", "--json")
    assert code == 1 and data["outcome"] == "not_switched" and data["code"] == "idle_unhealthy"
    code, data = cli_run(engine, clock, "deploy", "nope", "--image", "app:2", "--json")
    assert code == 2 and data["code"] == "invalid_input"
    code, data = cli_run(engine, clock, "promote", "web", "--json")
    assert code == 2 and "no colour awaits promotion" in data["reason"]
    code, text = cli_run(engine, clock, "deploy", "web", "--image", "app:2", "--manual-promote")
    assert code == 0 and "awaiting_promote" in text
    code, data = cli_run(engine, clock, "promote", "web", "--json")
    assert code == 0 and data["active"] == "green"


def test_cli_refuses_an_unknown_router(engine: FakeEngine, clock: FakeClock) -> None:
    from click.testing import CliRunner

    from zdd_swarm.cli import _Obj, cli

    engine.add_service("web-blue", "app:1", extra=RICH)
    obj = _Obj(engine_factory=lambda host: engine, clock=clock)
    args = ["bluegreen", "deploy", "web", "--image", "app:2", "--json", "--router"]
    result = CliRunner().invoke(cli, [*args, "envoy:web"], obj=obj)
    assert result.exit_code == 2
    assert "nginx:SERVICE or haproxy:SERVICE" in json.loads(result.stdout)["reason"]
    missing = CliRunner().invoke(cli, [*args, "nginx:web-router"], obj=obj)
    assert missing.exit_code == 2
    assert "router service 'web-router' not found" in json.loads(missing.stdout)["reason"]
    not_ours = CliRunner().invoke(cli, [*args, "haproxy:web-blue"], obj=obj)
    assert not_ours.exit_code == 2
    assert "not a haproxy router of web" in json.loads(not_ours.stdout)["reason"]
    assert engine.updates == []


def test_blue_green_in_python_takes_options_as_keywords() -> None:
    import zdd_swarm

    with pytest.raises(zdd_swarm.ConfigError, match="scale_down_delay"):
        zdd_swarm.blue_green("web", image="app:2", router_labels=[ROUTE], scale_down_delay="soon")


def test_a_promoted_release_that_fails_after_the_switch_is_marked_failed(
    engine: FakeEngine, clock: FakeClock
) -> None:
    bg, router = setup(engine, clock, auto_promote=False)
    bg.deploy("web", "app:2")
    failing = BlueGreen(
        router,
        bg.controller,
        BlueGreenOptions(post_switch_checks=[CallableGate(lambda: False, name="errors")]),
    )
    result = failing.promote("web")
    assert result.outcome is BlueGreenOutcome.SWITCHED_BACK and result.image == "app:2"
    assert router.active() is Colour.BLUE
    assert labels(engine, "web-green")[LABEL_FAILED] == "app:2"
    with pytest.raises(InputError, match="failed"):
        bg.rollback("web")


def test_two_operations_never_switch_one_app_at_once(engine: FakeEngine, clock: FakeClock) -> None:
    bg, router = setup(engine, clock)
    refused: list[Exception] = []

    def meanwhile(event: Any) -> None:
        if getattr(event, "stage", None) == "preview":
            other = BlueGreen(router, Controller(engine, clock=clock))
            with pytest.raises(UpdateInProgress, match="another blue-green deploy") as caught:
                other.rollback("web")
            refused.append(caught.value)

    bg.controller.hooks.append(meanwhile)
    assert bg.deploy("web", "app:2").outcome is BlueGreenOutcome.SWITCHED
    assert refused
    assert not any(LABEL_LOCK in labels(engine, f"web-{c}") for c in ("blue", "green"))


class _RollbackDuringTheDelay(FakeClock):
    """A clock on which another process rolls back while the deploy waits out
    its scale-down delay."""

    rollback: Any = None

    def sleep(self, seconds: float) -> None:
        if seconds >= 3600 and self.rollback is not None:
            rollback, self.rollback = self.rollback, None
            self.result = rollback()
        super().sleep(seconds)


def test_a_rollback_during_the_scale_down_delay_wins() -> None:
    clock = _RollbackDuringTheDelay()
    engine = FakeEngine(clock)
    bg, router = setup(engine, clock, scale_down_delay="1h")
    other = BlueGreen(router, Controller(engine, clock=clock), BlueGreenOptions())
    clock.rollback = lambda: other.rollback("web")
    result = bg.deploy("web", "app:2")
    assert result.outcome is BlueGreenOutcome.SWITCHED
    assert clock.result.code == "rolled_back"
    # the deploy's scale-down left the colour the rollback switched to alone
    assert router.active() is Colour.BLUE
    assert engine.inspect_service("web-blue").replicas == 3
    assert engine.inspect_service("web-green").replicas == 0


def bg_cli(engine: FakeEngine, clock: FakeClock, *args: str) -> tuple[int, Any]:
    """``zdd-swarm ARGS --json`` on the fake engine: the exit code and the JSON."""
    from click.testing import CliRunner

    from zdd_swarm.cli import _Obj, cli

    obj = _Obj(engine_factory=lambda host: engine, clock=clock)
    result = CliRunner().invoke(cli, [*args, "--json"], obj=obj)
    return result.exit_code, json.loads(result.stdout)


def test_the_router_is_remembered_so_promote_and_rollback_need_none(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web-blue", "app:1", replicas=2, extra=RICH)
    deploy = ["bluegreen", "deploy", "web", "--image", "app:2", "--manual-promote"]
    code, _ = bg_cli(engine, clock, *deploy, "--router", f"labels:{ROUTE}")
    assert code == 0
    for colour in ("blue", "green"):
        assert json.loads(labels(engine, f"web-{colour}")[LABEL_ROUTER]) == {
            "router": f"labels:{ROUTE}"
        }
    code, data = bg_cli(engine, clock, "bluegreen", "status", "web")
    assert code == 0 and data["router"] == "blue" and data["router_spec"] == f"labels:{ROUTE}"
    code, data = bg_cli(engine, clock, "bluegreen", "promote", "web")
    assert code == 0 and data["active"] == "green", data
    code, data = bg_cli(engine, clock, "bluegreen", "rollback", "web")
    assert code == 0 and data["code"] == "rolled_back" and data["active"] == "blue"


def test_another_router_than_the_remembered_one_is_refused_by_name(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web-blue", "app:1", replicas=2, extra=RICH)
    bg_cli(
        engine,
        clock,
        "bluegreen",
        "deploy",
        "web",
        "--image",
        "app:2",
        "--router",
        f"labels:{ROUTE}",
    )
    writes = len(engine.updates)
    for command in ("rollback", "promote", "status"):
        code, data = bg_cli(engine, clock, "bluegreen", command, "web", "--router", "labels:other")
        assert code == 2, data
        assert data["reason"].startswith("--router: invalid value 'labels:other'")
        assert f"deployed with the router labels:{ROUTE}" in data["reason"]
    with pytest.raises(ConfigError, match=r"^router: "):
        BlueGreen(LabelRouter(engine, "web", ["other"]), Controller(engine, clock=clock)).rollback(
            "web"
        )
    assert len(engine.updates) == writes
    code, data = bg_cli(
        engine, clock, "bluegreen", "rollback", "web", "--router", f"labels:{ROUTE}"
    )
    assert code == 0 and data["active"] == "blue"


def test_a_pair_that_remembers_no_router_needs_one(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web-blue", "app:1", replicas=2, extra=RICH)
    live = {"colour": Colour.BLUE}
    router = CallableRouter(lambda c: live.update(colour=c), lambda: live["colour"])
    BlueGreen(router, Controller(engine, clock=clock)).deploy("web", "app:2")
    assert LABEL_ROUTER not in labels(engine, "web-green")
    code, data = bg_cli(engine, clock, "bluegreen", "rollback", "web")
    assert code == 2 and "remembers no router" in data["reason"]
    code, data = bg_cli(engine, clock, "bluegreen", "status", "web")
    assert code == 0 and data["router"] is None and data["active"] == "green"


def test_in_python_the_remembered_router_and_its_address_come_from_the_pair(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web-blue", "app:1", replicas=2, extra=RICH)
    router = LabelRouter(engine, "web", [ROUTE])

    def fetch(url: str, timeout: float) -> tuple[dict[str, str], str]:
        return {}, str(router.active())  # the router's address answers with its colour

    options = BlueGreenOptions(auto_promote=False, router_url="http://web/", router_fetch=fetch)
    BlueGreen(router, Controller(engine, clock=clock), options).deploy("web", "app:2")
    again = BlueGreen.remembered(
        "web", Controller(engine, clock=clock), BlueGreenOptions(router_fetch=fetch)
    )
    assert again.router == router and again.options.router_url == "http://web/"
    assert again.promote("web").active is Colour.GREEN


def test_a_router_service_without_its_router_is_refused(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web-blue", "app:1", replicas=2, extra=RICH)
    deploy = ["bluegreen", "deploy", "web", "--image", "app:2", "--router", f"labels:{ROUTE}"]
    bg_cli(engine, clock, *deploy)
    writes = len(engine.updates)
    code, data = bg_cli(engine, clock, "bluegreen", "rollback", "web", "--router-service", "lb")
    assert code == 2 and data["reason"].startswith("--router-service: invalid value 'lb'")
    assert len(engine.updates) == writes


def test_an_unreadable_router_label_is_no_router() -> None:
    from zdd_swarm.bluegreen import RouterSpec

    spec = RouterSpec("nginx:lb", url="http://web/", answer="header:X-Zdd-Colour")
    assert RouterSpec.from_label(spec.to_label()) == spec
    for text in (None, "", "nginx:lb", "[]", '{"router": 1}', '{"service": "lb"}'):
        assert RouterSpec.from_label(text) is None, text
