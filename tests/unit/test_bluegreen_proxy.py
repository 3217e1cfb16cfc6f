"""The nginx and HAProxy routers on the fake engine, in simulated time."""

from __future__ import annotations

from typing import Any

import pytest

from zdd_swarm import Controller, InputError, RolloutOptions
from zdd_swarm.bluegreen import BlueGreen, BlueGreenOptions, BlueGreenOutcome, Colour
from zdd_swarm.bluegreen.proxy import (
    LABEL_ROUTER,
    LABEL_ROUTER_APP,
    LABEL_ROUTER_COLOUR,
    ProxyKind,
    ProxyRouter,
    render_config,
)
from zdd_swarm.testing import FakeClock, FakeEngine


def router_service(
    engine: FakeEngine, kind: ProxyKind = ProxyKind.NGINX, labels: dict[str, str] | None = None
) -> None:
    """A router of ``web`` on blue, as a user deploys it first."""
    text = render_config(kind, "web", Colour.BLUE).encode()
    config_labels = {LABEL_ROUTER_APP: "web", LABEL_ROUTER_COLOUR: "blue"}
    config_id = engine.create_object(
        "config", {"Name": "router-blue", "Labels": config_labels, "Data": text}
    )
    mount = {"ConfigID": config_id, "ConfigName": "router-blue", "File": {"Name": kind.config_path}}
    engine.add_service(
        "router",
        f"router:{kind.value}",
        replicas=2,
        extra={
            "Labels": labels
            if labels is not None
            else {LABEL_ROUTER: kind, LABEL_ROUTER_APP: "web"},
            "TaskTemplate": {
                "ContainerSpec": {"Image": f"router:{kind.value}", "Configs": [mount]},
                "ForceUpdate": 0,
            },
        },
    )


def setup(
    engine: FakeEngine, clock: FakeClock, kind: ProxyKind = ProxyKind.NGINX
) -> tuple[BlueGreen, ProxyRouter]:
    engine.add_service("web-blue", "app:1", replicas=2)
    router_service(engine, kind)
    controller = Controller(engine, clock=clock)
    router = ProxyRouter(engine, "web", "router", kind, controller=controller)
    options = BlueGreenOptions(scale_down_delay="5s")
    return BlueGreen(router, controller, options, RolloutOptions(task_deadline="30s")), router


def task_ids(engine: FakeEngine, name: str) -> set[str]:
    view = engine.inspect_service(name)
    return {t.id for t in engine.list_tasks(view.id) if t.running}


def test_an_nginx_config_sends_everything_to_one_colour() -> None:
    nginx = render_config(ProxyKind.NGINX, "web", Colour.GREEN, port=8000)
    assert "set $colour_upstream web-green;" in nginx and ":8000;" in nginx
    assert "add_header X-Zdd-Colour green always;" in nginx and "web-blue" not in nginx
    with pytest.raises(ValueError):
        render_config(ProxyKind.NGINX, "web")


def test_release_swaps_the_nginx_config_and_rolls_the_router(
    engine: FakeEngine, clock: FakeClock
) -> None:
    kind = ProxyKind.NGINX
    bg, router = setup(engine, clock, kind)
    router_tasks = task_ids(engine, "router")
    assert router.active() is Colour.BLUE
    result = bg.deploy("web", "app:2")
    assert result.outcome is BlueGreenOutcome.SWITCHED, result.summary()
    assert router.active() is Colour.GREEN and router.switched(Colour.GREEN)
    assert result.switch_s is not None
    # every router task was replaced: each runs the new config
    assert not task_ids(engine, "router") & router_tasks
    assert len(task_ids(engine, "router")) == 2
    spec = engine.inspect_service("router").spec
    assert spec["UpdateConfig"]["Order"] == "start-first"
    configs = spec["TaskTemplate"]["ContainerSpec"]["Configs"]
    assert [c["File"]["Name"] for c in configs] == [kind.config_path]
    assert engine.inspect_service("web-blue").replicas == 0


def test_rollback_swaps_back_reusing_the_config(engine: FakeEngine, clock: FakeClock) -> None:
    bg, router = setup(engine, clock)
    assert bg.deploy("web", "app:2").outcome is BlueGreenOutcome.SWITCHED
    green = engine.inspect_service("router").spec["TaskTemplate"]["ContainerSpec"]["Configs"]
    result = bg.rollback("web")
    assert result.outcome is BlueGreenOutcome.SWITCHED and result.active is Colour.BLUE
    assert router.active() is Colour.BLUE
    assert bg.deploy("web", "app:3").outcome is BlueGreenOutcome.SWITCHED
    again = engine.inspect_service("router").spec["TaskTemplate"]["ContainerSpec"]["Configs"]
    assert again == green
    # the first config (the user's), then one of ours per colour, reused
    assert len(engine.list_objects("config", {LABEL_ROUTER_APP: "web"})) == 3


def test_a_router_we_did_not_make_is_bad_input(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web-blue", "app:1", replicas=2)
    router_service(engine, labels={"team": "web"})
    bg = BlueGreen(
        ProxyRouter(engine, "web", "router", ProxyKind.NGINX), Controller(engine, clock=clock)
    )
    before = engine.inspect_service("router").version
    with pytest.raises(InputError, match="not a nginx router of web"):
        bg.deploy("web", "app:2")
    with pytest.raises(InputError, match="router service 'nope' not found"):
        BlueGreen(
            ProxyRouter(engine, "web", "nope", ProxyKind.NGINX), Controller(engine, clock=clock)
        ).deploy("web", "app:2")
    haproxy = ProxyRouter(engine, "web", "router", ProxyKind.HAPROXY)
    with pytest.raises(InputError):
        haproxy.check()
    assert engine.inspect_service("router").version == before
    assert "web-green" not in {s.spec["Name"] for s in engine.services.values()}


def test_a_router_without_our_config_is_bad_input(engine: FakeEngine, clock: FakeClock) -> None:
    labels = {LABEL_ROUTER: "nginx", LABEL_ROUTER_APP: "web"}
    engine.add_service("router", "router:nginx", replicas=1, extra={"Labels": labels})
    with pytest.raises(InputError, match="mounts no router config"):
        ProxyRouter(engine, "web", "router", ProxyKind.NGINX).check()


def test_a_router_that_does_not_roll_fails_the_switch_and_switches_back(
    engine: FakeEngine, clock: FakeClock
) -> None:
    from zdd_swarm.testing import ImageBehaviour

    bg, _ = setup(engine, clock)
    engine.behave("router:nginx", ImageBehaviour(fail_after=1.0))
    result = bg.deploy("web", "app:2")
    assert result.outcome is not BlueGreenOutcome.SWITCHED, result.summary()
    assert result.active is Colour.BLUE


def test_cli_parses_nginx_and_haproxy_routers(engine: FakeEngine, clock: FakeClock) -> None:
    import zdd_swarm.cli  # noqa: F401  (loads the bluegreen group in its place)
    from zdd_swarm.bluegreen.cli import parse_router

    nginx: Any = parse_router("nginx:router", "web", engine, None)
    assert isinstance(nginx, ProxyRouter) and nginx.kind is ProxyKind.NGINX
    assert nginx.service == "router"
    haproxy: Any = parse_router("haproxy:lb", "web", engine, None)
    assert haproxy.kind is ProxyKind.HAPROXY and haproxy.service == "lb"
    with pytest.raises(InputError):
        parse_router("nginx:", "web", engine, None)


def test_an_nginx_pair_rolls_back_through_the_router_of_its_deploy(
    engine: FakeEngine, clock: FakeClock
) -> None:
    bg, router = setup(engine, clock)
    assert bg.deploy("web", "app:2").active is Colour.GREEN
    again = BlueGreen.remembered("web", Controller(engine, clock=clock))
    assert isinstance(again.router, ProxyRouter) and again.router == router
    assert again.options.scale_down_delay.total_seconds() == 5
    result = again.rollback("web")
    assert result.code == "rolled_back" and router.active() is Colour.BLUE
