"""Whole stacks on the lab: examples/stack deployed in waves, to one verdict.

Each test deploys its own stack (a unique name); the fixture removes its
services, networks, secrets and configs afterwards.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from docker.errors import APIError, NotFound

from zdd_swarm import Controller, DockerEngine, RolloutOptions
from zdd_swarm.stack import LABEL_NAMESPACE, StackOutcome, StackResult, deploy_stack

from .load import load

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "examples" / "stack"
SERVICES = ("web", "api", "worker")


class Stack:
    def __init__(self, lab: Any, client: Any, folder: Path, name: str) -> None:
        self.lab = lab
        self.client = client
        self.folder = folder
        self.name = name
        self.images = {
            "WEB_IMAGE": lab.image("v1"),
            "API_IMAGE": lab.image("v1"),
            "WORKER_IMAGE": lab.image("v1"),
        }

    def deploy(
        self, *files: str, resolve_image: str = "never", prune: bool = False, **images: str
    ) -> StackResult:
        paths = [self.folder / f for f in (files or ("compose.yml",))]
        engine = DockerEngine(self.lab.docker_host)
        return deploy_stack(
            paths,
            self.name,
            engine=engine,
            controller=Controller(engine, options=RolloutOptions(task_deadline="40s")),
            environment={**self.images, **{k: self.lab.image(v) for k, v in images.items()}},
            resolve_image=resolve_image,
            prune=prune,
        )

    def specs(self) -> dict[str, Any]:
        services = self.client.api.services(filters={"label": f"{LABEL_NAMESPACE}={self.name}"})
        return {s["Spec"]["Name"]: s["Spec"] for s in services}

    def versions(self) -> dict[str, int]:
        services = self.client.api.services(filters={"label": f"{LABEL_NAMESPACE}={self.name}"})
        return {s["Spec"]["Name"]: s["Version"]["Index"] for s in services}

    def objects(self) -> dict[str, list[str]]:
        label = {"label": f"{LABEL_NAMESPACE}={self.name}"}
        api = self.client.api
        return {
            "network": sorted(n["Name"] for n in api.networks(filters=label)),
            "secret": sorted(s["Spec"]["Name"] for s in api.secrets(filters=label)),
            "config": sorted(c["Spec"]["Name"] for c in api.configs(filters=label)),
        }


def remove_stack(client: Any, name: str) -> None:
    """As ``docker stack rm``: services, then networks, secrets and configs
    (a network goes once the services' tasks have left it)."""
    api = client.api
    label = {"label": f"{LABEL_NAMESPACE}={name}"}
    for service in api.services(filters=label):
        with contextlib.suppress(NotFound):
            api.remove_service(service["ID"])
    for secret in api.secrets(filters=label):
        with contextlib.suppress(NotFound, APIError):
            api.remove_secret(secret["ID"])
    for config in api.configs(filters=label):
        with contextlib.suppress(NotFound, APIError):
            api.remove_config(config["ID"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = api.networks(filters=label)
        for network in left:
            with contextlib.suppress(NotFound, APIError):
                api.remove_network(network["Id"])
        if not left and not api.secrets(filters=label) and not api.configs(filters=label):
            return
        for secret in api.secrets(filters=label):
            with contextlib.suppress(NotFound, APIError):
                api.remove_secret(secret["ID"])
        for config in api.configs(filters=label):
            with contextlib.suppress(NotFound, APIError):
                api.remove_config(config["ID"])
        time.sleep(1)


def remove_services(client: Any, name: str) -> None:
    label = {"label": f"{LABEL_NAMESPACE}={name}"}
    for service in client.api.services(filters=label):
        with contextlib.suppress(NotFound):
            client.api.remove_service(service["ID"])


@pytest.fixture(scope="module")
def _stacks_made(docker_client: Any) -> Iterator[list[str]]:
    """The stacks of this module: their networks, secrets and configs are
    removed at its end, when their tasks have gone (a test's own teardown
    would wait for web's drain)."""
    made: list[str] = []
    yield made
    for name in made:
        remove_stack(docker_client, name)


@pytest.fixture
def make_stack(
    lab: Any, docker_client: Any, tmp_path: Path, _stacks_made: list[str]
) -> Iterator[Any]:
    """Stacks with unique names over a copy of examples/stack; their services
    are removed after the test, the rest at the end of the module."""
    made = _stacks_made

    def make(prefix: str = "st") -> Stack:
        name = f"{prefix}{uuid.uuid4().hex[:6]}"
        folder = tmp_path / name
        shutil.copytree(EXAMPLE, folder)
        made.append(name)
        return Stack(lab, docker_client, folder, name)

    mine = len(made)
    yield make
    for name in made[mine:]:
        remove_services(docker_client, name)


LOAD = """
services:
  web:
    x-zdd-swarm: {wave: 0}
    networks: [backend, lab]
    # an old task serves 12 s after SIGTERM: Swarm takes it out of its DNS
    # 2 s before the signal, and the other nodes learn it by gossip, which
    # lags on a loaded machine (8 s was not always enough here)
    environment: {APP_DRAIN_SECONDS: "12"}
    stop_grace_period: 20s
    deploy: {replicas: 4}
  api:
    x-zdd-swarm: {wave: 1}
networks:
  lab:
    external: true
    name: ${LAB_NETWORK}
"""


@pytest.mark.load
@pytest.mark.serial
def test_web_under_load_fails_no_request_through_a_release_put_back(
    make_stack: Any, lab: Any, docker_client: Any, _stacks_made: list[str]
) -> None:
    """web v1 -> v2 lands, api crashes, web goes back to v1: all under the
    load clients, and not one request to web fails."""
    # the stacks of earlier tests gone first, their tasks included: tasks
    # shutting down and networks going away on a 2-core machine delay the
    # overlay's updates on the nodes (a client then meets "No route to host")
    while _stacks_made:
        remove_stack(docker_client, _stacks_made.pop())
    stack = make_stack("ld")
    (stack.folder / "load.yml").write_text(LOAD)
    stack.images["LAB_NETWORK"] = lab.network
    assert stack.deploy("compose.yml", "load.yml").exit_code == 0
    before = stack.specs()
    web = f"{stack.name}_web"
    started = time.time()
    with load(docker_client, lab, web, seconds=40, rate=240) as traffic:
        time.sleep(4)
        result = stack.deploy("compose.yml", "load.yml", WEB_IMAGE="v2", API_IMAGE="crash")
    print(f"\nstack release put back under load: {traffic}; {result.summary()}")
    assert result.outcome is StackOutcome.ROLLED_BACK, result.summary()
    assert {r.service: r.outcome for r in result.services}[web] == "put_back"
    assert stack.specs() == before
    offsets = sorted({round(t - started) for t in traffic.error_times})
    assert traffic.failed == 0, f"{traffic}: {traffic.errors[:5]}; seconds in: {offsets}"
    assert traffic.sent >= 3_000, str(traffic)


def test_first_deploy_creates_everything_then_a_new_web_image_updates_only_web(
    make_stack: Any,
) -> None:
    """The first deploy by the CI example script, the second by the Python example."""
    stack = make_stack()
    run = subprocess.run(
        ["sh", str(EXAMPLE.parent / "ci" / "stack-deploy.sh")],
        env={
            **os.environ,
            **stack.images,
            "DOCKER_HOST": stack.lab.docker_host,
            "STACK": stack.name,
            "COMPOSE_FILE": str(stack.folder / "compose.yml"),
            "RESULT_FILE": str(stack.folder / "result.json"),
            "ZDD_SWARM": f"{sys.executable} -m zdd_swarm",
        },
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"wave 1:\n    create {stack.name}_web" in run.stdout
    assert json.loads((stack.folder / "result.json").read_text())["outcome"] == "completed"
    assert set(stack.specs()) == {f"{stack.name}_{s}" for s in SERVICES}
    assert stack.objects() == {
        "network": [f"{stack.name}_backend"],
        "secret": [f"{stack.name}_api_token"],
        "config": [f"{stack.name}_web_conf"],
    }
    before = stack.versions()
    example = _load_example()
    engine = DockerEngine(stack.lab.docker_host)
    result = example.deploy(
        stack.name,
        engine=engine,
        controller=Controller(engine),
        environment={**stack.images, "WEB_IMAGE": stack.lab.image("v2")},
    )
    assert result.outcome is StackOutcome.COMPLETED, result.summary()
    assert {r.service: r.outcome for r in result.services} == {
        f"{stack.name}_api": "unchanged",
        f"{stack.name}_worker": "unchanged",
        f"{stack.name}_web": "completed",
    }
    after = stack.versions()
    web = f"{stack.name}_web"
    assert {k: v for k, v in after.items() if k != web} == {
        k: v for k, v in before.items() if k != web
    }
    assert stack.specs()[web]["TaskTemplate"]["ContainerSpec"]["Image"] == stack.lab.image("v2")


def test_resolve_image_pins_digests_and_prune_removes_what_the_files_dropped(
    make_stack: Any,
) -> None:
    stack = make_stack("rp")
    assert stack.deploy(resolve_image="always").exit_code == 0
    images = {n: s["TaskTemplate"]["ContainerSpec"]["Image"] for n, s in stack.specs().items()}
    v1 = stack.lab.image("v1")
    assert all(image.startswith(v1 + "@sha256:") for image in images.values()), images
    before = stack.versions()
    compose = stack.folder / "compose.yml"
    text = compose.read_text()
    compose.write_text(text[: text.index("  worker:")] + text[text.index("\nnetworks:") + 1 :])
    result = stack.deploy(resolve_image="changed", prune=True, WEB_IMAGE="v2")
    assert result.outcome is StackOutcome.COMPLETED, result.summary()
    web, api, worker = (f"{stack.name}_{s}" for s in SERVICES)
    assert {r.service: r.outcome for r in result.services} == {
        api: "unchanged",
        web: "completed",
        worker: "removed",
    }
    specs = stack.specs()
    assert set(specs) == {web, api}
    assert specs[web]["TaskTemplate"]["ContainerSpec"]["Image"].startswith(
        stack.lab.image("v2") + "@sha256:"
    )
    assert stack.versions()[api] == before[api]
    assert specs[api]["TaskTemplate"]["ContainerSpec"]["Image"] == images[api]


def _load_example() -> Any:
    spec = importlib.util.spec_from_file_location(
        "example_stack_deploy", EXAMPLE.parent / "stack_deploy.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WEB_FIRST = """
services:
  web:
    x-zdd-swarm: {wave: 0}
  api:
    x-zdd-swarm: {wave: 1}
"""


def test_web_good_and_api_crashing_puts_both_back(make_stack: Any) -> None:
    """web rolls first (an explicit wave), lands, then api crashes: api is
    rolled back, web put back, and the stack's specs are as before."""
    stack = make_stack()
    (stack.folder / "order.yml").write_text(WEB_FIRST)
    assert stack.deploy().exit_code == 0
    before = stack.specs()
    result = stack.deploy("compose.yml", "order.yml", WEB_IMAGE="v2", API_IMAGE="crash")
    assert result.outcome is StackOutcome.ROLLED_BACK, result.summary()
    assert result.exit_code == 1
    outcomes = {r.service: r.outcome for r in result.services}
    assert outcomes[f"{stack.name}_web"] == "put_back"
    assert outcomes[f"{stack.name}_api"] == "rolled_back"
    assert stack.specs() == before


WEB_CANARY_FIRST = """
services:
  web:
    x-zdd-swarm: {wave: 0, steps: [50%, 100%]}
  api:
    x-zdd-swarm: {wave: 1}
"""


def test_a_canary_that_landed_is_put_back_when_a_later_wave_fails(make_stack: Any) -> None:
    """web goes out as a canary (Swarm held at one task of two, then
    released), lands; api crashes: web gets its spec from before the deploy
    back (after a canary, the engine's previous spec is the last step's)."""
    stack = make_stack()
    (stack.folder / "order.yml").write_text(WEB_CANARY_FIRST)
    assert stack.deploy("compose.yml", "order.yml").exit_code == 0
    before = stack.specs()
    result = stack.deploy("compose.yml", "order.yml", WEB_IMAGE="v2", API_IMAGE="crash")
    assert result.outcome is StackOutcome.ROLLED_BACK, result.summary()
    reports = {r.service: r for r in result.services}
    web, api = reports[f"{stack.name}_web"], reports[f"{stack.name}_api"]
    assert web.steps == ["50%", "100%"] and web.outcome == "put_back", web
    assert api.outcome == "rolled_back"
    assert stack.specs() == before


def test_a_new_service_that_never_gets_healthy_is_removed_and_the_rest_put_back(
    make_stack: Any,
) -> None:
    stack = make_stack()
    first = stack.deploy()
    assert first.exit_code == 0, first.summary()
    before, objects = stack.specs(), stack.objects()
    (stack.folder / "cache.yml").write_text(
        "services:\n"
        "  cache:\n"
        "    image: ${CACHE_IMAGE}\n"
        "    networks: [backend]\n"
        "    configs: [cache_conf]\n"
        "    deploy: {endpoint_mode: dnsrr}\n"
        "configs:\n"
        "  cache_conf: {file: ./web.conf}\n"
    )
    result = stack.deploy("compose.yml", "cache.yml", API_IMAGE="v2", CACHE_IMAGE="unhealthy")
    assert result.outcome is StackOutcome.ROLLED_BACK, result.summary()
    outcomes = {r.service: r.outcome for r in result.services}
    assert outcomes[f"{stack.name}_cache"] == "removed"
    assert outcomes[f"{stack.name}_api"] == "put_back"
    assert stack.specs() == before
    assert stack.objects() == objects


def _normalised(spec: Any, stack: str, ids: Mapping[str, str]) -> Any:
    text = json.dumps(spec)
    for object_id, name in ids.items():
        text = text.replace(object_id, name)
    return json.loads(text.replace(f"{stack}_", "STACK_").replace(f'"{stack}"', '"STACK"'))


def _object_ids(client: Any, stack: str) -> dict[str, str]:
    label = {"label": f"{LABEL_NAMESPACE}={stack}"}
    api = client.api
    found = {n["Id"]: n["Name"] for n in api.networks(filters=label)}
    found.update({s["ID"]: s["Spec"]["Name"] for s in api.secrets(filters=label)})
    found.update({c["ID"]: c["Spec"]["Name"] for c in api.configs(filters=label)})
    return {k: v.replace(f"{stack}_", "STACK_") for k, v in found.items()}


def _network(client: Any, name: str) -> dict[str, Any]:
    data = client.api.inspect_network(name)
    return {k: data.get(k) for k in ("Driver", "Scope", "Internal", "Attachable", "Labels")}


def test_specs_equal_those_of_docker_stack_deploy(make_stack: Any, lab: Any) -> None:
    """The same compose file deployed by ``docker stack deploy`` and by
    zdd_swarm: every field of every service spec is equal (names and ids of
    the stack's own objects aside), and so are the network, secret and
    config definitions."""
    docker = shutil.which("docker")
    assert docker, "the docker CLI is needed"
    ours, theirs = make_stack("zd"), make_stack("dk")
    command = [docker, "stack", "deploy", "--resolve-image=never", "--detach=true"]
    subprocess.run(
        [*command, "-c", "compose.yml", theirs.name],
        cwd=theirs.folder,
        env={**os.environ, "DOCKER_HOST": lab.docker_host, **theirs.images},
        check=True,
        capture_output=True,
    )
    assert ours.deploy().exit_code == 0
    client = ours.client
    our_ids, their_ids = _object_ids(client, ours.name), _object_ids(client, theirs.name)
    for service in SERVICES:
        mine = _normalised(ours.specs()[f"{ours.name}_{service}"], ours.name, our_ids)
        docker_spec = _normalised(
            theirs.specs()[f"{theirs.name}_{service}"], theirs.name, their_ids
        )
        assert mine == docker_spec, service
    assert _normalised(_network(client, f"{ours.name}_backend"), ours.name, {}) == _normalised(
        _network(client, f"{theirs.name}_backend"), theirs.name, {}
    )
    for kind in ("secrets", "configs"):
        listed = {
            s["Spec"]["Name"]: s["Spec"]
            for s in getattr(client.api, kind)()
            if s["Spec"]["Name"].startswith((ours.name, theirs.name))
        }
        mine = {k.replace(ours.name, "S"): v for k, v in listed.items() if ours.name in k}
        docker_objs = {
            k.replace(theirs.name, "S"): v for k, v in listed.items() if theirs.name in k
        }
        assert _normalised(mine, ours.name, {}) == _normalised(docker_objs, theirs.name, {})
    # and either tool takes over the other's stack: nothing to do
    theirs_again = theirs.deploy()
    assert [r.outcome for r in theirs_again.services] == ["unchanged"] * 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "not found"),
        ("services:\n  web: [\n", "line 3, column 1"),
        ("services:\n  web: {image: 'x:1', build: .}\n", "services.web.build"),
        ("services:\n  'we b': {image: 'x:1'}\n", "invalid service name"),
        ("services:\n  web: {image: '${ZDD_NO_SUCH_VARIABLE}'}\n", "ZDD_NO_SUCH_VARIABLE"),
    ],
)
def test_bad_input_exits_2_and_changes_nothing(
    make_stack: Any, lab: Any, text: str | None, message: str
) -> None:
    stack = make_stack()
    compose = stack.folder / "bad.yml"
    if text is not None:
        compose.write_text(text)
    run = subprocess.run(
        [sys.executable, "-m", "zdd_swarm", "stack", "deploy", "-c", str(compose), stack.name],
        env={**os.environ, "DOCKER_HOST": lab.docker_host},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    assert message in run.stderr
    assert stack.specs() == {}
    assert stack.objects() == {"network": [], "secret": [], "config": []}


def test_stack_watch_finishes_a_deploy_whose_process_was_killed(
    make_stack: Any, lab: Any, docker_client: Any
) -> None:
    """The deploying process is killed while api (wave 0) rolls; web (wave 1)
    never started. ``stack watch`` watches api to its end and, the release
    being incomplete, puts the stack back: exit 1, specs as before."""
    stack = make_stack()
    assert stack.deploy().exit_code == 0
    before = stack.specs()
    env = {
        **os.environ,
        **stack.images,
        "API_IMAGE": lab.image("v2"),
        "WEB_IMAGE": lab.image("v2"),
        "DOCKER_HOST": lab.docker_host,
    }
    command = [sys.executable, "-m", "zdd_swarm", "stack", "deploy"]
    deploying = subprocess.Popen(
        [*command, "-c", str(stack.folder / "compose.yml"), stack.name],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"{stack.name}_api"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = docker_client.api.inspect_service(api).get("UpdateStatus") or {}
            if status.get("State") == "updating":
                break
            time.sleep(0.2)
        else:
            pytest.fail("api's update never started")
    finally:
        deploying.kill()
        deploying.wait(timeout=30)
    run = subprocess.run(
        [sys.executable, "-m", "zdd_swarm", "stack", "watch", stack.name, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    data = json.loads(run.stdout)
    assert data["outcome"] == "rolled_back"
    assert "stopped before" in data["reason"]
    assert stack.specs() == before
    assert f"{stack.name}_zdd-swarm-deploy" not in stack.objects()["config"]
