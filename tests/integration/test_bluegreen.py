"""Blue-green on the lab with the label router: the switch moves the router
labels between the colour services, restarts no task, and keeps every field
of the service on the new colour."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
from docker.errors import NotFound

from zdd_swarm import EngineAPIError, HttpGate
from zdd_swarm.bluegreen import (
    BlueGreen,
    BlueGreenOptions,
    BlueGreenOutcome,
    BlueGreenStage,
    Colour,
    LabelRouter,
)
from zdd_swarm.bluegreen.lease import LABEL_LEASE, LEASE_TTL, RENEW_EVERY
from zdd_swarm.bluegreen.store import read_pair
from zdd_swarm.spec import diff_specs
from zdd_swarm.testing import FakeClock, FakeEngine

from .support import (
    controller,
    create_service,
    rich_spec_kwargs,
    running_tasks,
    wait_until,
)

pytestmark = pytest.mark.integration

ROUTE = "traefik.http.routers.app"
ROUTER_LABELS = {f"{ROUTE}.rule": "Host(`app.example`)", f"{ROUTE}.entrypoints": "web"}


def create_blue(docker_client: Any, lab: Any, app: str) -> dict[str, Any]:
    """``<app>-blue`` with every field a user would be upset to lose, routed."""
    kwargs = rich_spec_kwargs(docker_client, app)
    kwargs["labels"] = {**kwargs["labels"], **ROUTER_LABELS}
    create_service(docker_client, lab, Colour.BLUE.service(app), "v1", replicas=2, **kwargs)
    spec: dict[str, Any] = docker_client.api.inspect_service(Colour.BLUE.service(app))["Spec"]
    return spec


def task_ids(docker_client: Any, service: str) -> set[str]:
    return {t["ID"] for t in running_tasks(docker_client, service)}


def blue_green(engine: Any, app: str, hooks: Any = (), **options: Any) -> BlueGreen:
    options.setdefault("scale_down_delay", "2s")
    router = LabelRouter(engine, app, [ROUTE])
    return BlueGreen(router, controller(engine, hooks=hooks), BlueGreenOptions(**options))


def running_or_none(docker_client: Any, service: str) -> list[Any]:
    """The running tasks of ``service``; none while it does not exist yet."""
    try:
        return running_tasks(docker_client, service)
    except NotFound:
        return []


def router_labels(docker_client: Any, service: str) -> dict[str, str]:
    labels = docker_client.api.inspect_service(service)["Spec"].get("Labels") or {}
    return {k: v for k, v in labels.items() if k.startswith(ROUTE)}


def test_a_good_release_switches_with_every_field_kept_and_no_task_restarted(
    lab: Any, docker_client: Any, app: str, engine: Any
) -> None:
    blue, green = Colour.BLUE.service(app), Colour.GREEN.service(app)
    before = create_blue(docker_client, lab, app)
    blue_tasks = task_ids(docker_client, blue)
    seen: dict[str, set[str]] = {}

    def at_stage(event: Any) -> None:
        # the running tasks of both colours around the label changes
        if isinstance(event, BlueGreenStage) and event.stage in ("preview", "post_switch"):
            seen[event.stage] = task_ids(docker_client, blue) | task_ids(docker_client, green)

    result = blue_green(engine, app, hooks=[at_stage]).deploy(app, lab.image("v2"))
    assert result.outcome is BlueGreenOutcome.SWITCHED, result.summary()
    assert result.active is Colour.GREEN and result.switch_s is not None
    assert router_labels(docker_client, green) == ROUTER_LABELS
    assert router_labels(docker_client, blue) == {}
    # the label writes (state, then the switch) restarted no task of either colour
    assert blue_tasks <= seen["preview"]
    assert seen["post_switch"] == seen["preview"]
    after = docker_client.api.inspect_service(green)["Spec"]
    assert set(diff_specs(before, after)) - {"Name", "TaskTemplate.ContainerSpec.Image"} == {
        f"Labels.{k}" for k in after["Labels"] if k.startswith("zdd-swarm.bluegreen.")
    }
    assert {t["Spec"]["ContainerSpec"]["Image"] for t in running_tasks(docker_client, green)} == {
        lab.image("v2")
    }
    assert len(running_tasks(docker_client, green)) == 2
    assert docker_client.api.inspect_service(blue)["Spec"]["Mode"]["Replicated"]["Replicas"] == 0


def test_a_bad_preview_is_never_switched_to(
    lab: Any, docker_client: Any, app: str, engine: Any, failing_endpoint: str
) -> None:
    blue, green = Colour.BLUE.service(app), Colour.GREEN.service(app)
    create_blue(docker_client, lab, app)
    blue_tasks = task_ids(docker_client, blue)
    bg = blue_green(engine, app, preview_checks=[HttpGate(failing_endpoint)])
    result = bg.deploy(app, lab.image("v2"))
    assert result.outcome is BlueGreenOutcome.NOT_SWITCHED, result.summary()
    assert result.exit_code == 1 and result.code == "preview_check_failed"
    assert "HTTP 503" in result.reason.message
    assert "switch" not in result.steps
    assert router_labels(docker_client, blue) == ROUTER_LABELS
    assert router_labels(docker_client, green) == {}
    assert docker_client.api.inspect_service(green)["Spec"]["Mode"]["Replicated"]["Replicas"] == 0
    assert task_ids(docker_client, blue) == blue_tasks


def test_rollback_switches_back_to_the_standby(
    lab: Any, docker_client: Any, app: str, engine: Any
) -> None:
    blue, green = Colour.BLUE.service(app), Colour.GREEN.service(app)
    create_blue(docker_client, lab, app)
    bg = blue_green(engine, app)
    assert bg.deploy(app, lab.image("v2")).outcome is BlueGreenOutcome.SWITCHED
    result = bg.rollback(app)
    assert result.outcome is BlueGreenOutcome.SWITCHED, result.summary()
    assert result.code == "rolled_back" and result.active is Colour.BLUE
    assert router_labels(docker_client, blue) == ROUTER_LABELS
    assert router_labels(docker_client, green) == {}
    images = {t["Spec"]["ContainerSpec"]["Image"] for t in running_tasks(docker_client, blue)}
    assert images == {lab.image("v1")} and len(running_tasks(docker_client, blue)) == 2
    assert docker_client.api.inspect_service(green)["Spec"]["Mode"]["Replicated"]["Replicas"] == 0


def test_the_cli_exit_codes_say_what_happened(
    lab: Any, docker_client: Any, app: str, failing_endpoint: str
) -> None:
    from click.testing import CliRunner

    from zdd_swarm.cli import cli

    blue, green = Colour.BLUE.service(app), Colour.GREEN.service(app)
    create_blue(docker_client, lab, app)
    base = ["-H", lab.docker_host, "bluegreen", "deploy", app, "--image", lab.image("v2")]
    route = ["--router", f"labels:{ROUTE}", "--json"]
    missing = CliRunner().invoke(cli, [*base, *route, "--router-service", f"{app}-traefik"])
    assert missing.exit_code == 2, missing.output
    assert "router service" in json.loads(missing.stdout)["reason"]
    with contextlib.suppress(NotFound):
        docker_client.api.inspect_service(green)
        raise AssertionError(f"{green} was created for a refused deploy")
    bad = CliRunner().invoke(
        cli, [*base, *route, "--preview-http", failing_endpoint, "--task-deadline", "30s"]
    )
    assert bad.exit_code == 1, bad.output
    data = json.loads(bad.stdout)
    assert data["outcome"] == "not_switched" and data["code"] == "preview_check_failed"
    assert router_labels(docker_client, blue) == ROUTER_LABELS


def test_the_top_level_promote_and_rollback_reach_the_pair(
    lab: Any, docker_client: Any, app: str
) -> None:
    blue, green = Colour.BLUE.service(app), Colour.GREEN.service(app)
    create_blue(docker_client, lab, app)

    def zdd(*args: str) -> dict[str, Any]:
        argv = [sys.executable, "-m", "zdd_swarm", "-H", lab.docker_host, *args, "--json"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    deploy = ["bluegreen", "deploy", app, "--image", lab.image("v2"), "--manual-promote"]
    zdd(*deploy, "--router", f"labels:{ROUTE}", "--scale-down-delay", "1s")
    promoted = zdd("promote", app)  # through the router the deploy left with the pair
    assert (promoted["code"], promoted["active"]) == ("switched", "green")
    assert router_labels(docker_client, green) == ROUTER_LABELS
    assert router_labels(docker_client, blue) == {}
    rolled_back = zdd("rollback", app)
    assert (rolled_back["code"], rolled_back["active"]) == ("rolled_back", "blue")
    assert router_labels(docker_client, blue) == ROUTER_LABELS
    assert docker_client.api.inspect_service(green)["Spec"]["Mode"]["Replicated"]["Replicas"] == 0


def test_a_watch_takes_over_a_deploy_whose_process_was_killed(
    lab: Any, docker_client: Any, app: str, engine: Any
) -> None:
    """A deploy killed in its preview (its lock held, its lease no longer
    renewed): ``bluegreen watch`` takes it over once the lease expires, the
    release that never got traffic is scaled to 0, the lock and the lease are
    gone, and the result says it was interrupted (exit 1)."""
    blue, green = Colour.BLUE.service(app), Colour.GREEN.service(app)
    create_blue(docker_client, lab, app)
    listener = socket.create_server(("127.0.0.1", 0))  # a preview check that passes
    port = listener.getsockname()[1]
    zdd = [sys.executable, "-m", "zdd_swarm", "-H", lab.docker_host, "bluegreen"]
    deploy = [*zdd, "deploy", app, "--image", lab.image("v2"), "--router", f"labels:{ROUTE}"]
    deploy += ["--preview-tcp", f"127.0.0.1:{port}", "--preview-window", "10m"]
    process = subprocess.Popen(deploy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(f"{green} running", lambda: len(running_or_none(docker_client, green)) == 2, 90)
        wait_until("the lock", lambda: read_pair(engine, app).lock is not None, 10)
        time.sleep(2)  # in its preview window, renewing its lease
    finally:
        process.kill()  # SIGKILL: nothing of it runs any more
        process.wait(timeout=10)
        listener.close()
    killed = time.monotonic()
    watch = subprocess.run(
        [*zdd, "watch", app, "--timeout", "3m", "--json"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    took = time.monotonic() - killed
    assert watch.returncode == 1, (watch.stdout, watch.stderr)
    data = json.loads(watch.stdout)
    assert (data["outcome"], data["code"], data["active"]) == ("interrupted", "interrupted", "blue")
    assert (
        "the deploy of" in data["reason"]
        and f"{green.rsplit('-', 1)[1]} never got" in (data["reason"])
    )
    spec = docker_client.api.inspect_service(green)["Spec"]
    assert spec["Mode"]["Replicated"]["Replicas"] == 0
    assert router_labels(docker_client, blue) == ROUTER_LABELS
    pair = read_pair(engine, app)
    assert pair.lock is None and pair.state.active is Colour.BLUE
    assert docker_client.api.configs(filters={"label": [LABEL_LEASE]}) == []
    # the lease was last renewed up to RENEW_EVERY before the kill
    ttl = LEASE_TTL.total_seconds()
    assert ttl - RENEW_EVERY.total_seconds() <= took < ttl + 30, took


def test_a_lease_config_relabels_on_the_engine_as_on_the_fake(
    docker_client: Any, app: str, engine: Any
) -> None:
    """``relabel_config`` (what renews a lease) on the real engine and on
    ``FakeEngine``: the labels are replaced, the data kept, a missing config
    refused; the fake is held to what the engine does."""

    def observe(on: Any, data: Any) -> tuple[dict[str, str], bytes, int | None]:
        name = f"{app}-lease-contract"
        config_id = on.create_object("config", {"Name": name, "Labels": {"a": "1"}, "Data": b"x"})
        on.relabel_config(config_id, {"b": "2"})
        (found,) = [o for o in on.list_objects("config", {"b": "2"}) if o.name == name]
        kept = data(config_id)
        try:
            on.relabel_config("0" * 25, {"c": "3"})
            status = None
        except EngineAPIError as exc:
            status = exc.status_code
        on.remove_object("config", config_id)
        return dict(found.labels), kept, status

    def engine_data(config_id: str) -> bytes:
        return base64.b64decode(docker_client.api.inspect_config(config_id)["Spec"]["Data"])

    fake = FakeEngine(FakeClock())
    real = observe(engine, engine_data)
    assert docker_client.api.configs(filters={"name": f"{app}-lease-contract"}) == []
    assert real == observe(fake, lambda i: fake.objects["config"][i][2]) == ({"b": "2"}, b"x", 404)
