"""The HAProxy router: its configuration, the runtime API's commands and
answers, and the switch on the fake engine with a fake runtime API."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from zdd_swarm import Controller, InputError, RolloutOptions
from zdd_swarm.bluegreen import BlueGreen, BlueGreenOptions, BlueGreenOutcome, Colour
from zdd_swarm.bluegreen.haproxy import (
    MAP_PATH,
    RuntimeAPIError,
    parse_set_map,
    parse_show_map,
    set_map_command,
    show_map_command,
)
from zdd_swarm.bluegreen.proxy import (
    LABEL_ADMIN_PORT,
    LABEL_ROUTER,
    LABEL_ROUTER_APP,
    LABEL_ROUTER_COLOUR,
    ProxyKind,
    ProxyRouter,
    render_colour_map,
    render_config,
)
from zdd_swarm.engine import NodeView
from zdd_swarm.testing import FakeClock, FakeEngine

SHOWN = "0x55d0c0ffee00 active {}\n\n"


@dataclass
class FakeRuntime:
    """HAProxy's runtime API of each router task, by (node address, port): the
    colour of its map, or None for a task that does not answer."""

    born: Colour = Colour.BLUE
    maps: dict[tuple[str, int], Colour | None] = field(default_factory=dict)
    sent: list[tuple[str, int, str]] = field(default_factory=list)

    def __call__(self, address: str, port: int, command: str) -> str:
        self.sent.append((address, port, command))
        colour = self.maps.setdefault((address, port), self.born)
        if colour is None:
            raise RuntimeAPIError(f"HAProxy's runtime API at {address}:{port} does not answer")
        if command == show_map_command():
            return SHOWN.format(colour.value)
        *_, value = command.split()
        self.maps[address, port] = Colour(value)
        return "\n"


def haproxy_router(
    engine: FakeEngine, labels: dict[str, str] | None = None, **extra: object
) -> None:
    """A router of ``web`` on blue with its runtime API on 9999 in host mode."""
    engine.add_service(
        "router",
        "router:haproxy",
        replicas=2,
        extra={
            "Labels": labels
            if labels is not None
            else {LABEL_ROUTER: "haproxy", LABEL_ROUTER_APP: "web", LABEL_ROUTER_COLOUR: "blue"},
            "EndpointSpec": {
                "Mode": "dnsrr",
                "Ports": [{"TargetPort": 9999, "PublishedPort": 9999, "PublishMode": "host"}],
            },
            **extra,
        },
    )


def setup(
    engine: FakeEngine, clock: FakeClock, runtime: FakeRuntime
) -> tuple[BlueGreen, ProxyRouter]:
    engine.add_service("web-blue", "app:1", replicas=2)
    haproxy_router(engine)
    controller = Controller(engine, clock=clock)
    router = ProxyRouter(engine, "web", "router", ProxyKind.HAPROXY, send=runtime)
    options = BlueGreenOptions(scale_down_delay="5s")
    return BlueGreen(router, controller, options, RolloutOptions(task_deadline="30s")), router


def running(engine: FakeEngine, name: str = "router") -> set[str]:
    view = engine.inspect_service(name)
    return {t.id for t in engine.list_tasks(view.id) if t.running}


def test_the_haproxy_config_names_both_colours_and_a_map_chooses() -> None:
    text = render_config(ProxyKind.HAPROXY, "web", port=8000, admin_port=9100)
    assert "web-blue:8000 resolvers swarm" in text and "web-green:8000 resolvers swarm" in text
    assert f"use_backend %[str(active),map({MAP_PATH})]" in text
    assert "stats socket ipv4@0.0.0.0:9100 level operator" in text
    assert "http-response set-header X-Zdd-Colour %[be_name]" in text
    assert "default_backend" not in text  # a map that names no colour routes nowhere
    assert render_colour_map().splitlines()[-1] == (
        'active {{index .Service.Labels "zdd-swarm.router.colour"}}'
    )


def test_the_runtime_api_commands_and_their_answers() -> None:
    assert set_map_command(Colour.GREEN) == f"set map {MAP_PATH} active green"
    assert show_map_command() == f"show map {MAP_PATH}"
    assert parse_show_map(SHOWN.format("green")) is Colour.GREEN
    assert parse_show_map("0x55d0c0ffee00 active\n\n") is None
    assert parse_show_map("\n") is None
    with pytest.raises(RuntimeAPIError, match="Unknown map identifier"):
        parse_show_map("Unknown map identifier. Please use #<id> or <file>.\n\n")
    parse_set_map("\n")
    with pytest.raises(RuntimeAPIError, match="refused the switch: Unknown map"):
        parse_set_map("Unknown map identifier. Please use #<id> or <file>.\n\n")


def test_a_release_switches_every_router_task_in_place(
    engine: FakeEngine, clock: FakeClock
) -> None:
    runtime = FakeRuntime()
    bg, router = setup(engine, clock, runtime)
    tasks, template = running(engine), engine.inspect_service("router").spec["TaskTemplate"]
    assert router.active() is Colour.BLUE
    result = bg.deploy("web", "app:2")
    assert result.outcome is BlueGreenOutcome.SWITCHED, result.summary()
    assert result.switch_s is not None and router.active() is Colour.GREEN
    # the same router tasks, each told through its node's address, none restarted
    assert running(engine) == tasks
    assert runtime.maps == {("10.0.0.1", 9999): Colour.GREEN, ("10.0.0.2", 9999): Colour.GREEN}
    spec = engine.inspect_service("router").spec
    assert spec["TaskTemplate"] == template and spec["Labels"][LABEL_ROUTER_COLOUR] == "green"
    assert engine.list_objects("config", {}) == []
    back = bg.rollback("web")
    assert back.outcome is BlueGreenOutcome.SWITCHED and router.active() is Colour.BLUE
    assert set(runtime.maps.values()) == {Colour.BLUE} and running(engine) == tasks


def test_a_task_that_still_answers_the_old_colour_is_told_again(
    engine: FakeEngine, clock: FakeClock
) -> None:
    runtime = FakeRuntime()
    _, router = setup(engine, clock, runtime)
    router.switch(Colour.GREEN)
    assert router.switched(Colour.GREEN)
    runtime.maps["10.0.0.2", 9999] = Colour.BLUE  # born just before the label changed
    assert not router.switched(Colour.GREEN)
    assert router.switched(Colour.GREEN)
    runtime.maps["10.0.0.1", 9999] = None
    assert not router.switched(Colour.GREEN)


def test_the_admin_port_comes_from_the_routers_label(engine: FakeEngine) -> None:
    labels = {LABEL_ROUTER: "haproxy", LABEL_ROUTER_APP: "web", LABEL_ROUTER_COLOUR: "blue"}
    engine.add_service(
        "router",
        "router:haproxy",
        replicas=1,
        extra={
            "Labels": {**labels, LABEL_ADMIN_PORT: "9100"},
            "EndpointSpec": {
                "Ports": [{"TargetPort": 9100, "PublishedPort": 9200, "PublishMode": "host"}]
            },
        },
    )
    runtime = FakeRuntime()
    ProxyRouter(engine, "web", "router", ProxyKind.HAPROXY, send=runtime).check()
    assert [(a, p) for a, p, _ in runtime.sent] == [("10.0.0.1", 9200)]


@pytest.mark.parametrize(
    ("labels", "endpoint", "answers", "why"),
    [
        ({LABEL_ROUTER_COLOUR: ""}, None, Colour.BLUE, "needs the label zdd-swarm.router.colour"),
        ({}, {"Mode": "dnsrr"}, Colour.BLUE, r"does not publish HAProxy's runtime API \(port 9999"),
        (
            {},
            {"Ports": [{"TargetPort": 9999, "PublishedPort": 9999, "PublishMode": "ingress"}]},
            Colour.BLUE,
            "in host mode",
        ),
        ({}, None, None, "does not answer"),
    ],
)
def test_a_haproxy_router_the_switch_cannot_reach_is_bad_input(
    engine: FakeEngine,
    labels: dict[str, str],
    endpoint: dict[str, object] | None,
    answers: Colour | None,
    why: str,
) -> None:
    base = {LABEL_ROUTER: "haproxy", LABEL_ROUTER_APP: "web", LABEL_ROUTER_COLOUR: "blue"}
    haproxy_router(engine, {**base, **labels}, **({"EndpointSpec": endpoint} if endpoint else {}))
    before = engine.inspect_service("router").version
    router = ProxyRouter(engine, "web", "router", ProxyKind.HAPROXY, send=FakeRuntime(answers))
    with pytest.raises(InputError, match=why):
        router.check()
    assert engine.inspect_service("router").version == before


def test_a_task_whose_node_has_no_address_is_bad_input(
    engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    haproxy_router(engine)
    nodes = [NodeView(n, n, "ready", "active", "worker") for n in engine.nodes]
    monkeypatch.setattr(engine, "list_nodes", lambda: nodes)
    router = ProxyRouter(engine, "web", "router", ProxyKind.HAPROXY, send=FakeRuntime())
    with pytest.raises(InputError, match="node has no address"):
        router.check()
