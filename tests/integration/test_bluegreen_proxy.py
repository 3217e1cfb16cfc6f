"""Blue-green on the lab behind nginx and HAProxy routers (Debian's packages
in the lab's router images): nginx's switch mounts the other colour's config
in the router service and rolls it start-first; HAProxy's sets the colour map
of every router task through its runtime API; load clients send requests
through the router only, and record which release answered."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from docker.errors import NotFound
from docker.types import ConfigReference, EndpointSpec, RestartPolicy, ServiceMode

from zdd_swarm import HttpGate, ServiceChange, UpdateConfig
from zdd_swarm.bluegreen import (
    BlueGreen,
    BlueGreenOptions,
    BlueGreenOutcome,
    BlueGreenStage,
    Colour,
)
from zdd_swarm.bluegreen.haproxy import MAP_PATH, parse_show_map, send_command, show_map_command
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

from .load import LoadResult, load
from .support import (
    SECOND,
    controller,
    create_service,
    overlay_fetch,
    running_tasks,
    wait_running,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def app(service_name: str, docker_client: Any) -> Iterator[str]:
    """An app name; its colours, router service and router configs are removed after."""
    yield service_name
    for name in (*(c.service(service_name) for c in Colour), f"{service_name}-router"):
        with contextlib.suppress(NotFound):
            docker_client.api.remove_service(name)
    time.sleep(1)  # configs in use until the tasks are gone
    for config in docker_client.api.configs(
        filters={"label": f"{LABEL_ROUTER_APP}={service_name}"}
    ):
        with contextlib.suppress(Exception):
            docker_client.api.remove_config(config["ID"])


def admin_port(app: str) -> int:
    """The HAProxy router's runtime API port of ``app``: one per app, so that the
    routers of tests running side by side do not share a port on a node."""
    return 20000 + zlib.crc32(app.encode()) % 20000


def create_pair_and_router(docker_client: Any, lab: Any, app: str, kind: ProxyKind) -> str:
    """``<app>-blue`` (v1, 2 tasks) and ``<app>-router`` sending traffic to it, as a user
    deploys them first; returns the router service's name."""
    create_service(docker_client, lab, Colour.BLUE.service(app), "v1", replicas=2)
    labels = {LABEL_ROUTER_APP: app, LABEL_ROUTER_COLOUR: "blue"}
    service_labels = {LABEL_ROUTER: kind.value, LABEL_ROUTER_APP: app}
    endpoint = EndpointSpec(mode="dnsrr")
    if kind is ProxyKind.HAPROXY:
        admin = admin_port(app)
        data = render_config(kind, app, admin_port=admin).encode()
        service_labels |= {LABEL_ROUTER_COLOUR: "blue", LABEL_ADMIN_PORT: str(admin)}
        # the runtime API in host mode: reached at each task's node address
        endpoint = EndpointSpec(mode="dnsrr", ports={admin: (admin, "tcp", "host")})
    else:
        data = render_config(kind, app, Colour.BLUE).encode()
    config = docker_client.configs.create(name=f"{app}-router-first", data=data, labels=labels)
    configs = [ConfigReference(config.id, config.name, filename=kind.config_path)]
    if kind is ProxyKind.HAPROXY:
        colour_map = docker_client.configs.create(
            name=f"{app}-router-map",
            data=render_colour_map().encode(),
            labels={LABEL_ROUTER_APP: app},
            templating={"Name": "golang"},
        )
        configs.append(ConfigReference(colour_map.id, colour_map.name, filename=MAP_PATH))
    router = f"{app}-router"
    docker_client.services.create(
        lab.router_image(kind.value),
        name=router,
        networks=[lab.network],
        mode=ServiceMode("replicated", replicas=2),
        endpoint_spec=endpoint,
        restart_policy=RestartPolicy(condition="any", delay=SECOND),
        labels=service_labels,
        configs=configs,
    )
    wait_running(docker_client, router, 2)
    return router


def blue_green(engine: Any, app: str, router: str, kind: ProxyKind) -> BlueGreen:
    ctrl = controller(engine)
    options = BlueGreenOptions(scale_down_delay="2s", preview_window="1s", post_switch_window="1s")
    return BlueGreen(ProxyRouter(engine, app, router, kind, controller=ctrl), ctrl, options)


def changes_between(result: LoadResult, body: str, start: float, end: float) -> list[int]:
    """Times at which a client turned to ``body`` strictly inside (start, end), in whole seconds."""
    return [
        t for changes in result.bodies for t, b in changes if b == body and start + 1 < t < end - 1
    ]


@pytest.mark.parametrize("kind", list(ProxyKind))
def test_requests_through_the_router_reach_the_new_colour_and_come_back_on_rollback(
    lab: Any, docker_client: Any, app: str, engine: Any, kind: ProxyKind
) -> None:
    router = create_pair_and_router(docker_client, lab, app, kind)
    bg = blue_green(engine, app, router, kind)
    with load(docker_client, lab, router, seconds=40, rate=120, bodies=True) as traffic:
        time.sleep(3)
        result = bg.deploy(app, lab.image("v2"))
        deployed = time.time()
        assert result.outcome is BlueGreenOutcome.SWITCHED, result.summary()
        assert result.active is Colour.GREEN and result.switch_s is not None
        time.sleep(4)
        rolling_back = time.time()
        back = bg.rollback(app)
        assert back.outcome is BlueGreenOutcome.SWITCHED, back.summary()
        assert back.active is Colour.BLUE
    assert traffic.failed == 0, f"{traffic}: {traffic.errors}"
    # between the deploy and the rollback, the router sent everything to green (v2)
    assert changes_between(traffic, "v1", deployed, rolling_back) == []
    assert all(any(b == "v2" for _, b in changes) for changes in traffic.bodies)
    assert traffic.settled("v1") is not None, traffic.bodies
    spec = docker_client.api.inspect_service(router)["Spec"]
    mounted = spec["TaskTemplate"]["ContainerSpec"]["Configs"]
    if kind is ProxyKind.NGINX:
        assert [c["File"]["Name"] for c in mounted] == [kind.config_path]
        assert spec["UpdateConfig"]["Order"] == "start-first"
    else:
        assert [c["File"]["Name"] for c in mounted] == [kind.config_path, MAP_PATH]
        assert spec["Labels"][LABEL_ROUTER_COLOUR] == "blue"


def _router_tasks(lab: Any, router: str) -> dict[str, tuple[str, Any]]:
    """Each running router task: its id -> (its node's address, its container)."""
    found = {}
    for i in range(1, lab.nodes + 1):
        label = f"com.docker.swarm.service.name={router}"
        for container in lab.client(i).containers.list(filters={"label": label}):
            found[container.labels["com.docker.swarm.task.id"]] = (lab.node_address(i), container)
    return found


def _seen_by_each(lab: Any, router: str, admin: int) -> dict[str, tuple[Colour | None, str]]:
    """Each running router task: (the colour its runtime API answers, the release
    that answers a request sent through it)."""
    seen = {}
    for task, (address, container) in _router_tasks(lab, router).items():
        colour = parse_show_map(send_command(address, admin, show_map_command()))
        got = container.exec_run(["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"])
        seen[task] = (colour, got.output.decode().strip())
    return seen


def _running_ids(docker_client: Any, router: str, count: int) -> set[str]:
    wait_running(docker_client, router, count)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ids = {t["ID"] for t in running_tasks(docker_client, router)}
        if len(ids) == count:
            return ids
        time.sleep(0.5)
    raise AssertionError(f"{router}: not {count} running tasks")


def test_the_haproxy_switch_keeps_every_router_task_and_later_tasks_route_to_the_active_colour(
    lab: Any, docker_client: Any, app: str, engine: Any
) -> None:
    """A router task started while green awaits promotion routes to blue; the promotion
    switches every running router task in place (same tasks); a router task started
    after it routes to green."""
    router = create_pair_and_router(docker_client, lab, app, ProxyKind.HAPROXY)
    admin = admin_port(app)
    ctrl = controller(engine)
    options = BlueGreenOptions(
        auto_promote=False, preview_window="1s", post_switch_window="1s", scale_down_delay="1s"
    )
    bg = BlueGreen(ProxyRouter(engine, app, router, ProxyKind.HAPROXY), ctrl, options)
    awaiting = bg.deploy(app, lab.image("v2"))
    assert awaiting.outcome is BlueGreenOutcome.AWAITING_PROMOTE, awaiting.summary()
    docker_client.services.get(router).scale(3)  # one task per node: the port is the node's
    before = _running_ids(docker_client, router, 3)
    assert set(_seen_by_each(lab, router, admin).values()) == {(Colour.BLUE, "v1")}
    promoted = bg.promote(app)
    assert promoted.outcome is BlueGreenOutcome.SWITCHED, promoted.summary()
    assert promoted.switch_s is not None and promoted.switch_s < 3, promoted.switch_s
    assert _running_ids(docker_client, router, 3) == before
    assert set(_seen_by_each(lab, router, admin).values()) == {(Colour.GREEN, "v2")}
    # a router task lost: Swarm starts another, born with the active colour
    lost = sorted(before)[0]
    _router_tasks(lab, router)[lost][1].remove(force=True)
    deadline = time.monotonic() + 60
    while lost in (after := _running_ids(docker_client, router, 3)):
        assert time.monotonic() < deadline, "the lost router task was not replaced"
        time.sleep(0.5)
    seen = _seen_by_each(lab, router, admin)
    assert len(after - before) == 1 and set(seen) == after
    assert set(seen.values()) == {(Colour.GREEN, "v2")}, seen


def test_the_cli_refuses_a_router_it_did_not_make_and_switches_through_nginx(
    lab: Any, docker_client: Any, app: str
) -> None:
    from click.testing import CliRunner

    from zdd_swarm.cli import cli

    router = create_pair_and_router(docker_client, lab, app, ProxyKind.NGINX)
    base = ["-H", lab.docker_host, "bluegreen", "deploy", app, "--image", lab.image("v2")]
    fast = ["--preview-window", "1s", "--post-switch-window", "1s", "--scale-down-delay", "1s"]
    version = docker_client.api.inspect_service(router)["Version"]["Index"]
    for spec, why in (
        (f"nginx:{app}-nope", "not found"),
        (f"haproxy:{router}", "is not a haproxy router"),
        (f"nginx:{Colour.BLUE.service(app)}", "is not a nginx router"),
    ):
        refused = CliRunner().invoke(cli, [*base, "--router", spec, "--json"])
        assert refused.exit_code == 2, refused.output
        assert why in json.loads(refused.stdout)["reason"]
    assert docker_client.api.inspect_service(router)["Version"]["Index"] == version
    with contextlib.suppress(NotFound):
        docker_client.api.inspect_service(Colour.GREEN.service(app))
        raise AssertionError("a colour was created for a refused deploy")
    done = CliRunner().invoke(cli, [*base, "--router", f"nginx:{router}", *fast, "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["outcome"] == "switched" and data["active"] == "green"
    container = docker_client.api.inspect_service(router)["Spec"]["TaskTemplate"]["ContainerSpec"]
    (mounted,) = container["Configs"]
    assert mounted["ConfigName"].startswith(f"{router}-green-")


def test_the_cli_refuses_a_haproxy_router_whose_runtime_api_it_cannot_reach(
    lab: Any, docker_client: Any, app: str
) -> None:
    """Exit 2 before anything changes: the runtime API's port is not published in
    host mode, or published but nothing answers on it."""
    from click.testing import CliRunner

    from zdd_swarm.cli import cli

    router = create_pair_and_router(docker_client, lab, app, ProxyKind.HAPROXY)
    args = ["-H", lab.docker_host, "bluegreen", "deploy", app, "--image", lab.image("v2")]
    args += ["--router", f"haproxy:{router}", "--json"]
    service = docker_client.services.get(router)
    service.update(labels={**service.attrs["Spec"]["Labels"], LABEL_ADMIN_PORT: "9"})
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2, refused.output
    assert "does not publish HAProxy's runtime API (port 9) in host mode" in refused.output
    # published in host mode, but HAProxy does not listen there
    ports = {admin_port(app): (admin_port(app), "tcp", "host"), 9: (9, "tcp", "host")}
    docker_client.services.get(router).update(endpoint_spec=EndpointSpec(mode="dnsrr", ports=ports))
    wait_running(docker_client, router, 2)
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2, refused.output
    assert "runtime API at 10.88." in refused.output and "does not answer" in refused.output
    with contextlib.suppress(NotFound):
        docker_client.api.inspect_service(Colour.GREEN.service(app))
        raise AssertionError("a colour was created for a refused deploy")


def settled_between(result: LoadResult, body: str, start: float, end: float) -> int:
    """Unix time (whole seconds) from which every client got only ``body`` within (start, end)."""
    return max(
        max((t for t, b in changes if b == body and start - 1 <= t < end), default=0)
        for changes in result.bodies
    )


def _switch_started(marks: dict[str, float]) -> Any:
    """A hook noting the wall time at which a switch is called (the preview just ended)."""

    def hook(event: Any) -> None:
        if getattr(event, "stage", None) == "preview":
            marks["switch"] = time.time()

    return hook


@pytest.mark.load
@pytest.mark.serial
@pytest.mark.parametrize("kind", list(ProxyKind))
def test_switch_and_switch_back_under_load_fail_no_request(
    lab: Any, docker_client: Any, app: str, engine: Any, kind: ProxyKind
) -> None:
    """≥ 10,000 requests through the router across a switch, a switch back and a
    start-first rolling update of the same release; the times go to docs/benchmarks.md."""
    router = create_pair_and_router(docker_client, lab, app, kind)
    marks: dict[str, float] = {}
    ctrl = controller(engine, hooks=[_switch_started(marks)])
    options = BlueGreenOptions(scale_down_delay="2s", preview_window="1s", post_switch_window="1s")
    bg = BlueGreen(ProxyRouter(engine, app, router, kind, controller=ctrl), ctrl, options)
    figures: dict[str, float] = {}
    with load(docker_client, lab, router, seconds=60, rate=320, bodies=True) as traffic:
        time.sleep(3)
        result = bg.deploy(app, lab.image("v2"))
        assert result.outcome is BlueGreenOutcome.SWITCHED, result.summary()
        figures["switch_call"], figures["switch_s"] = marks["switch"], result.switch_s or 0
        time.sleep(3)
        back = bg.rollback(app)
        assert back.outcome is BlueGreenOutcome.SWITCHED, back.summary()
        figures["back_call"], figures["back_s"] = marks["switch"], back.switch_s or 0
        time.sleep(3)
        # the same release as a start-first rolling update of the active colour
        update = UpdateConfig(parallelism=1, order="start-first", monitor="3s")
        figures["rolling_call"] = time.time()
        rolled = ctrl.update(
            Colour.BLUE.service(app), ServiceChange(image=lab.image("v2"), update_config=update)
        )
        assert rolled.outcome.value == "completed", rolled.summary()
        figures["rolling_s"] = rolled.duration_s
    print(f"\n{kind.value}: {traffic}; {figures}")
    when = sorted({round(t - figures["switch_call"]) for t in traffic.error_times})
    assert traffic.sent >= 10_000 and traffic.failed == 0, (
        f"{traffic}: {traffic.errors}; failures at these seconds after the switch call: {when}"
    )
    settled = traffic.settled("v2")
    assert settled is not None
    seen = {
        "switch": settled_between(traffic, "v2", figures["switch_call"], figures["back_call"]),
        "back": settled_between(traffic, "v1", figures["back_call"], figures["rolling_call"]),
        "rolling": settled,
    }
    calls = {"switch": "switch_call", "back": "back_call", "rolling": "rolling_call"}
    observed = {k: round(v - figures[calls[k]], 1) for k, v in seen.items()}
    print(f"{kind.value}: every client got only the new release (whole seconds) {observed}")


def _marks_of(marks: dict[str, float]) -> Any:
    """A hook noting the wall time at which each stage of a blue-green operation ended
    (``<stage>`` when it succeeded, ``<stage>!`` when it failed)."""

    def hook(event: Any) -> None:
        if isinstance(event, BlueGreenStage):
            marks.setdefault(event.stage + ("" if event.ok else "!"), time.time())

    return hook


@pytest.mark.load
@pytest.mark.serial
def test_a_bad_release_behind_haproxy_never_gets_a_production_request(
    lab: Any, docker_client: Any, app: str, failing_endpoint: str
) -> None:
    """Healthy tasks, but the preview check fails: through the CLI (exit 1), the router is
    never switched, no client ever gets the new release, the idle colour is scaled back."""
    from click.testing import CliRunner

    from zdd_swarm.cli import cli

    router = create_pair_and_router(docker_client, lab, app, ProxyKind.HAPROXY)
    version = docker_client.api.inspect_service(router)["Version"]["Index"]
    args = ["-H", lab.docker_host, "bluegreen", "deploy", app, "--image", lab.image("v2")]
    args += ["--router", f"haproxy:{router}", "--preview-http", failing_endpoint]
    args += ["--preview-window", "2s", "--task-deadline", "30s", "--json"]
    with load(docker_client, lab, router, seconds=20, rate=120, bodies=True) as traffic:
        time.sleep(2)
        done = CliRunner().invoke(cli, args)
    assert done.exit_code == 1, done.output
    data = json.loads(done.stdout)
    print(
        f"\nhaproxy, bad release: {traffic}; exit 1 after {data['duration_s']}s, "
        f"{data['checks']}; first errors: {traffic.errors}"
    )
    assert (data["outcome"], data["code"]) == ("not_switched", "preview_check_failed")
    assert data["active"] == "blue" and data["checks"]["preview"]["failed"] >= 1
    assert "switch" not in data["steps"] and data["steps"][-1] == "scale_down_idle"
    assert traffic.failed == 0, f"{traffic}: {traffic.errors}"
    answered = {b for changes in traffic.bodies for _, b in changes}
    assert answered == {"v1"}, traffic.bodies
    assert docker_client.api.inspect_service(router)["Version"]["Index"] == version
    green = docker_client.api.inspect_service(Colour.GREEN.service(app))["Spec"]
    assert green["Mode"]["Replicated"]["Replicas"] == 0


@pytest.mark.load
@pytest.mark.serial
def test_a_post_switch_failure_behind_nginx_switches_back_under_load(
    lab: Any, docker_client: Any, app: str, engine: Any, failing_endpoint: str
) -> None:
    """The post-switch check fails: switched back at once, with the failed check requests
    counted in the result and the events; the switch and the switch back are probed
    through the router's address. The clients' figures go to docs/benchmarks.md."""
    router = create_pair_and_router(docker_client, lab, app, ProxyKind.NGINX)
    marks: dict[str, float] = {}
    seen: list[Any] = []
    watcher: list[subprocess.Popen[str]] = []

    def watch_from_another_process(event: Any) -> None:
        if isinstance(event, BlueGreenStage) and event.stage == "ensure_idle":
            argv = ["-H", lab.docker_host, "bluegreen", "watch", app, "--json"]
            watcher.append(_zdd_swarm(*argv, "--timeout", "2m"))

    ctrl = controller(engine, hooks=[_marks_of(marks), seen.append, watch_from_another_process])
    check = HttpGate(failing_endpoint, min_success_ratio=0.5, name="errors")
    with (
        overlay_fetch(docker_client, lab) as fetch,
        load(docker_client, lab, router, seconds=35, rate=160, bodies=True) as traffic,
    ):
        # the switch and the switch back count once requests through the router's
        # address (here: its name on the overlay) get the new release's body (its tag)
        options = BlueGreenOptions(
            preview_window="1s",
            post_switch_checks=[check],
            post_switch_window="2s",
            router_url=f"http://{router}:8080/",
            router_fetch=fetch,
        )
        proxy = ProxyRouter(engine, app, router, ProxyKind.NGINX, controller=ctrl)
        time.sleep(2)
        result = BlueGreen(proxy, ctrl, options).deploy(app, lab.image("v2"))
    assert result.outcome is BlueGreenOutcome.SWITCHED_BACK and result.exit_code == 1
    assert result.code == "post_switch_check_failed" and result.active is Colour.BLUE
    counted = result.checks["post_switch"]
    assert counted.samples >= 2 and counted.failed == counted.samples, counted
    assert f"{counted.failed} of {counted.samples} check requests failed" in result.reason.message
    (failed,) = [e for e in seen if isinstance(e, BlueGreenStage) and e.stage == "post_switch"]
    assert (failed.ok, failed.samples, failed.failed) == (False, counted.samples, counted.failed)
    assert result.switch_back_s is not None
    assert traffic.failed == 0, f"{traffic}: {traffic.errors}"
    # v2 answered only after the switch call, and every client ended on v1 again
    assert changes_between(traffic, "v2", 0, marks["preview"] - 1) == []
    assert traffic.settled("v1") is not None, traffic.bodies
    back = settled_between(traffic, "v1", marks["post_switch!"], time.time())
    print(
        f"\nnginx, post-switch failure: {traffic}; check requests {counted}; "
        f"switch {result.switch_s}s, switch back "
        f"{result.switch_back_s}s (zdd_swarm), every client on v1 "
        f"{back - marks['post_switch!']:.1f}s after the check failed (whole seconds)"
    )
    green = docker_client.api.inspect_service(Colour.GREEN.service(app))["Spec"]
    assert green["Mode"]["Replicated"]["Replicas"] == 0
    # the watch in another process followed it to the same end, with its exit code
    out, _ = watcher[0].communicate(timeout=60)
    assert watcher[0].returncode == 1, out
    assert json.loads(out)["code"] == "post_switch_check_failed"


def _zdd_swarm(*args: str) -> subprocess.Popen[str]:
    """``zdd-swarm ARGS`` in a process of its own (this package, this interpreter)."""
    argv = [sys.executable, "-m", "zdd_swarm", *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
