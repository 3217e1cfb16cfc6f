"""The router's public address as a probe (``router_url``), with fake answers."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from zdd_swarm import ConfigError, Controller, InputError
from zdd_swarm.bluegreen import (
    BlueGreen,
    BlueGreenOptions,
    BlueGreenOutcome,
    CallableRouter,
    Colour,
    RouterProbe,
)
from zdd_swarm.bluegreen.probe import identities, image_tag
from zdd_swarm.testing import FakeClock, FakeEngine

URL = "http://router.example/"


class Address:
    """A router's address: answers with the image of the colour it sends to,
    ``lag`` looks after the router itself switched."""

    def __init__(self, engine: FakeEngine, lag: int = 0) -> None:
        self.engine = engine
        self.routed = Colour.BLUE
        self.serving = Colour.BLUE
        self.lag = lag
        self.behind = 0

    def switch(self, to: Colour) -> None:
        self.routed, self.behind = to, self.lag

    def fetch(self, url: str, timeout: float) -> tuple[Mapping[str, str], str]:
        assert url == URL
        if self.behind:
            self.behind -= 1
        else:
            self.serving = self.routed
        image = self.engine.inspect_service(self.serving.service("web")).image
        return {"X-Colour": self.serving.value}, image_tag(image) + "\n"


@pytest.fixture
def address(engine: FakeEngine) -> Address:
    engine.add_service("web-blue", "registry:5000/web:v1", replicas=2, extra={"Labels": {}})
    return Address(engine)


def blue_green(engine: FakeEngine, clock: FakeClock, address: Address, **options: Any) -> BlueGreen:
    router = CallableRouter(address.switch, lambda: address.routed)
    options = {
        "router_url": URL,
        "router_fetch": address.fetch,
        "scale_down_delay": "1s",
        **options,
    }
    return BlueGreen(router, Controller(engine, clock=clock), BlueGreenOptions(**options))


def test_the_tag_of_an_image_reference() -> None:
    assert image_tag("registry:5000/web:v2@sha256:abc") == "v2"
    assert image_tag("registry:5000/web") == "latest"
    assert image_tag("web:2") == "2"
    assert identities(Colour.GREEN, "web:2") == {"green", "web:2", "2"}


def test_a_probe_reads_the_body_or_a_header() -> None:
    def fetch(url: str, timeout: float) -> tuple[Mapping[str, str], str]:
        return {"X-Zdd-Colour": "green"}, "v2\nmore\n"

    assert RouterProbe(URL, fetch=fetch).read() == "v2"
    assert RouterProbe(URL, "header:x-zdd-colour", fetch=fetch).read() == "green"
    assert RouterProbe(URL, "header:X-Other", fetch=fetch).read() == ""
    ok, detail = RouterProbe(URL, fetch=fetch, requests=3).reaches({"v1"})
    assert not ok and detail == f"3 of 3 answers through {URL}: v2"


def test_a_request_without_an_answer_does_not_reach_the_colour() -> None:
    def fetch(url: str, timeout: float) -> tuple[Mapping[str, str], str]:
        raise OSError("connection refused")

    ok, detail = RouterProbe(URL, fetch=fetch, requests=2).reaches({"v1"})
    assert not ok and "no answer (connection refused)" in detail


@pytest.mark.parametrize(
    "options",
    [{"router_url": "router:8080"}, {"router_url": URL, "router_answer": "header:"}],
)
def test_a_bad_router_url_or_answer_is_a_config_error(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        BlueGreenOptions(**options)


def test_the_switch_is_done_once_the_address_answers_from_the_new_colour(
    engine: FakeEngine, clock: FakeClock, address: Address
) -> None:
    address.lag = 12  # requests still reach blue for two and a bit looks
    result = blue_green(engine, clock, address).deploy("web", "registry:5000/web:v2")
    assert result.outcome is BlueGreenOutcome.SWITCHED, result.summary()
    assert result.active is Colour.GREEN and address.serving is Colour.GREEN
    assert result.switch_s is not None and result.switch_s >= 2


def test_the_header_may_name_the_colour(
    engine: FakeEngine, clock: FakeClock, address: Address
) -> None:
    bg = blue_green(engine, clock, address, router_answer="header:X-Colour")
    assert bg.deploy("web", "registry:5000/web:v2").outcome is BlueGreenOutcome.SWITCHED


def test_an_address_that_never_reaches_the_new_colour_switches_back(
    engine: FakeEngine, clock: FakeClock, address: Address
) -> None:
    address.lag = 10**6  # the router says it switched, its users still get blue
    bg = blue_green(engine, clock, address, switch_timeout="5s")
    result = bg.deploy("web", "registry:5000/web:v2")
    assert result.outcome is BlueGreenOutcome.SWITCHED_BACK and result.exit_code == 1
    assert result.code == "switch_not_effective"
    assert f"5 of 5 answers through {URL}: v1" in result.reason.message
    assert address.routed is Colour.BLUE
    assert engine.inspect_service("web-green").replicas == 0


def test_an_address_that_does_not_reach_the_active_colour_is_bad_input(
    engine: FakeEngine, clock: FakeClock, address: Address
) -> None:
    bg = blue_green(engine, clock, address, router_answer="header:X-Nope")
    with pytest.raises(InputError, match="do not reach the active colour blue"):
        bg.deploy("web", "registry:5000/web:v2")
    assert engine.updates == []


@pytest.fixture
def served() -> Iterator[tuple[str, dict[str, str]]]:
    """A router's address on loopback, answering with ``body``'s value."""
    answer = {"body": "v1"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = answer["body"].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", answer
    server.shutdown()


def test_cli_router_url(
    engine: FakeEngine, clock: FakeClock, served: tuple[str, dict[str, str]]
) -> None:
    from click.testing import CliRunner

    from zdd_swarm.cli import _Obj, cli

    url, answer = served
    engine.add_service("web-blue", "web:v1", replicas=2, extra={"Labels": {"rt.web.rule": "x"}})
    obj = _Obj(engine_factory=lambda host: engine, clock=clock)
    args = ["bluegreen", "deploy", "web", "--image", "web:v2", "--router", "labels:rt.web"]
    args += ["--router-url", url, "--switch-timeout", "3s", "--json"]
    stuck = CliRunner().invoke(cli, args, obj=obj)
    assert stuck.exit_code == 1, stuck.output
    assert json.loads(stuck.stdout)["code"] == "switch_not_effective"
    answer["body"] = "nobody"
    refused = CliRunner().invoke(cli, args, obj=obj)
    assert refused.exit_code == 2 and "--router-url" in json.loads(refused.stdout)["reason"]
