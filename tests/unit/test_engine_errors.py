"""Failures of the docker SDK around a request (its setup, the docker config
file, credential helpers, digest resolution) are our errors with their exit
code; a bug is exit 6. docker-py runs for real over a fake transport."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
import requests.adapters
from click.testing import CliRunner

from zdd_swarm.cli import _Obj, cli
from zdd_swarm.engine import DockerEngine
from zdd_swarm.errors import DockerConfigError, EngineAPIError, InvalidImageReference
from zdd_swarm.model import Platform, ServiceView
from zdd_swarm.testing import FakeClock, FakeEngine

IMAGE = "registry.example.com/app:2"
DIGEST = "sha256:" + "ab" * 32
SERVICE = {
    "ID": "s1",
    "Version": {"Index": 7},
    "Spec": {
        "Name": "web",
        "Mode": {"Replicated": {"Replicas": 2}},
        "TaskTemplate": {"ContainerSpec": {"Image": "registry.example.com/app:1"}},
    },
}


class Transport(requests.adapters.BaseAdapter):
    """Answers docker-py's requests from a table of (method, path suffix)."""

    def __init__(self, routes: dict[tuple[str, str], tuple[int, Any]]) -> None:
        super().__init__()
        self.routes = routes
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        path = (request.path_url or "").split("?")[0]
        status, body = next(
            (
                answer
                for (method, suffix), answer in self.routes.items()
                if method == request.method and path.endswith(suffix)
            ),
            (404, {"message": f"no route for {path}"}),
        )
        response = requests.Response()
        response.status_code = status
        response.headers["Content-Type"] = "application/json"
        response._content = json.dumps(body).encode()
        response.request = request
        response.url = str(request.url)
        return response

    def close(self) -> None:
        pass

    def paths(self, method: str) -> list[str]:
        return [str(r.path_url) for r in self.sent if r.method == method]


ROUTES: dict[tuple[str, str], tuple[int, Any]] = {
    ("GET", "/info"): (200, {"Swarm": {"ControlAvailable": True, "NodeID": "n1"}}),
    ("GET", "/version"): (200, {"Version": "20.10.24", "ApiVersion": "1.41"}),
    ("GET", "/services/web"): (200, SERVICE),
    ("GET", "/tasks"): (200, []),
    ("POST", "/services/s1/update"): (200, {"Warnings": None}),
    ("GET", f"/distribution/{IMAGE}/json"): (
        200,
        {
            "Descriptor": {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": DIGEST,
            },
            "Platforms": [{"architecture": "amd64", "os": "linux"}],
        },
    ),
}


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty docker config directory, and no other config to fall back to."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    monkeypatch.setenv("HOME", str(tmp_path))
    return directory


@pytest.fixture
def connect() -> Iterator[Callable[..., tuple[DockerEngine, Transport]]]:
    """A DockerEngine over docker-py over a fake transport (the client is
    built when called, so it reads the docker config of the test)."""
    clients: list[docker.DockerClient] = []

    def make(routes: dict[tuple[str, str], tuple[int, Any]] | None = None) -> Any:
        transport = Transport({**ROUTES, **(routes or {})})
        client = docker.DockerClient(base_url="tcp://127.0.0.1:9", version="1.41")
        client.api.mount("http://", transport)
        clients.append(client)
        return DockerEngine(client=client, retry_for=0), transport

    yield make
    for client in clients:
        client.close()


def _write_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    helper = bin_dir / f"docker-credential-{name}"
    helper.write_text(f"#!/bin/sh\n{body}\n")
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


def _update(engine: DockerEngine) -> list[str]:
    spec = {"Name": "web", "TaskTemplate": {"ContainerSpec": {"Image": IMAGE}}}
    return engine.update_service(ServiceView.from_api(SERVICE), spec)


# -- the docker config file and credential helpers -------------------------------


def test_credentials_from_the_config_file_go_with_the_update_and_the_digest_lookup(
    docker_config: Path, connect: Callable[..., tuple[DockerEngine, Transport]]
) -> None:
    (docker_config / "config.json").write_text(
        json.dumps({"auths": {"registry.example.com": {"auth": "dTpw"}}})
    )
    engine, transport = connect()
    _update(engine)
    engine.resolve_image(IMAGE)
    assert all("X-Registry-Auth" in r.headers for r in transport.sent)
    assert len(transport.sent) == 2


def test_a_broken_config_file_is_named_and_nothing_is_sent(
    docker_config: Path, connect: Callable[..., tuple[DockerEngine, Transport]]
) -> None:
    # docker-py would skip the file and send no credentials: the nodes could
    # not pull a private image and a good release would be rolled back
    (docker_config / "config.json").write_text('{"auths": {"registry.example.com": ')
    engine, transport = connect()
    for call in (lambda: _update(engine), lambda: engine.resolve_image(IMAGE)):
        with pytest.raises(DockerConfigError, match="is not valid JSON") as caught:
            call()
        assert str(docker_config / "config.json") in str(caught.value)
    assert transport.sent == []


def test_an_unreadable_config_file_is_named(
    docker_config: Path, connect: Callable[..., tuple[DockerEngine, Transport]]
) -> None:
    (docker_config / "config.json").mkdir()  # unreadable even as root
    engine, transport = connect()
    with pytest.raises(DockerConfigError, match="cannot read the docker config file"):
        _update(engine)
    assert transport.sent == []


def test_a_credential_store_that_is_not_installed_is_named(
    docker_config: Path, connect: Callable[..., tuple[DockerEngine, Transport]]
) -> None:
    (docker_config / "config.json").write_text(json.dumps({"credsStore": "nonexistent"}))
    engine, transport = connect()
    for call in (lambda: _update(engine), lambda: engine.resolve_image(IMAGE)):
        with pytest.raises(DockerConfigError) as caught:
            call()
        message = str(caught.value)
        assert "registry.example.com" in message and "docker-credential-nonexistent" in message
    assert transport.sent == []


@pytest.mark.parametrize(
    "body, said",
    [
        ("echo 'keychain is locked'; exit 1", "keychain is locked"),
        ("echo 'not json'", "Expecting value"),  # not even docker-py's own error
    ],
)
def test_a_failing_credential_helper_is_named(
    docker_config: Path,
    connect: Callable[..., tuple[DockerEngine, Transport]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    body: str,
    said: str,
) -> None:
    _write_helper(tmp_path, monkeypatch, "broken", body)
    (docker_config / "config.json").write_text(
        json.dumps({"credHelpers": {"registry.example.com": "broken"}})
    )
    engine, transport = connect()
    with pytest.raises(DockerConfigError, match=said):
        _update(engine)
    assert transport.sent == []


def test_a_rollback_reads_no_credentials(
    docker_config: Path, connect: Callable[..., tuple[DockerEngine, Transport]]
) -> None:
    (docker_config / "config.json").write_text(json.dumps({"credsStore": "nonexistent"}))
    engine, transport = connect()
    engine.update_service(ServiceView.from_api(SERVICE), {}, rollback=True)
    assert transport.paths("POST") == ["/v1.41/services/s1/update?version=7&rollback=previous"]


def test_an_image_reference_docker_py_refuses_is_invalid_input(
    docker_config: Path, connect: Callable[..., tuple[DockerEngine, Transport]]
) -> None:
    engine, transport = connect()
    with pytest.raises(InvalidImageReference):
        engine.resolve_image("http://registry.example.com/app:2")
    assert transport.sent == []


# -- digest resolution ----------------------------------------------------------------


def test_digest_and_platforms_come_from_the_distribution_inspect(
    docker_config: Path, connect: Callable[..., tuple[DockerEngine, Transport]]
) -> None:
    engine, transport = connect()
    resolved = engine.resolve_image(IMAGE)
    assert resolved.digest == DIGEST
    assert resolved.platforms == (Platform(os="linux", architecture="amd64"),)
    assert transport.paths("GET") == [f"/v1.41/distribution/{IMAGE}/json"]


@pytest.mark.parametrize(
    "answer, said",
    [
        ((404, {"message": "manifest unknown"}), "manifest unknown"),
        ((401, {"message": "unauthorized: authentication required"}), "unauthorized"),
        ((200, {"Platforms": []}), "the engine's answer has none"),
    ],
)
def test_a_digest_that_cannot_be_resolved_names_the_image(
    docker_config: Path,
    connect: Callable[..., tuple[DockerEngine, Transport]],
    answer: tuple[int, Any],
    said: str,
) -> None:
    engine, _ = connect({("GET", f"/distribution/{IMAGE}/json"): answer})
    with pytest.raises(EngineAPIError, match=said) as caught:
        engine.resolve_image(IMAGE)
    assert f"cannot resolve {IMAGE!r} to a registry digest" in str(caught.value)


# -- building the client -----------------------------------------------------------------


@pytest.mark.parametrize("host", ["foo://127.0.0.1:9", "tcp://", "tcp://127.0.0.1:notaport"])
def test_a_bad_docker_host_is_named(
    docker_config: Path, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.setenv("DOCKER_HOST", host)
    with pytest.raises(DockerConfigError, match="DOCKER_HOST") as caught:
        DockerEngine(retry_for=0).info()
    assert repr(host) in str(caught.value)


def test_missing_tls_files_name_the_cert_path(
    docker_config: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path / "no-certs"))
    with pytest.raises(DockerConfigError, match="DOCKER_CERT_PATH") as caught:
        DockerEngine("tcp://127.0.0.1:9", retry_for=0).info()
    assert str(tmp_path / "no-certs") in str(caught.value)


@pytest.mark.parametrize(
    "content, problem",
    [
        (json.dumps({"auths": {"r.example.com": "x"}}), "Invalid configuration for registry"),
        ("[]", "is not a JSON object"),  # docker-py: AttributeError
    ],
)
def test_a_config_file_docker_py_refuses_while_building_the_client_is_named(
    docker_config: Path, content: str, problem: str
) -> None:
    (docker_config / "config.json").write_text(content)
    with pytest.raises(DockerConfigError, match=problem) as caught:
        DockerEngine("tcp://127.0.0.1:9", retry_for=0).info()
    assert str(docker_config / "config.json") in str(caught.value)


# -- the CLI: exit codes, one line, no traceback ----------------------------------------------


def _cli(engine: Any, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli, list(args), obj=_Obj(engine_factory=lambda host: engine, clock=FakeClock())
    )
    return result.exit_code, result.stdout, result.stderr


def test_a_failing_credential_helper_exits_5_before_anything_is_sent(
    docker_config: Path, connect: Callable[..., tuple[DockerEngine, Transport]]
) -> None:
    (docker_config / "config.json").write_text(json.dumps({"credsStore": "nonexistent"}))
    engine, transport = connect()
    code, out, err = _cli(engine, "update", "web", "--image", IMAGE, "--json")
    assert code == 5, err
    data = json.loads(out)
    assert (data["code"], data["error"]) == ("engine_error", "DockerConfigError")
    assert "docker-credential-nonexistent" in data["reason"]
    assert transport.paths("POST") == []
    code, _, err = _cli(engine, "update", "web", "--image", IMAGE)
    assert code == 5 and "Traceback" not in err
    assert err.startswith("zdd-swarm: error: cannot read the credentials for registry")


def test_a_digest_that_cannot_be_resolved_exits_5(
    docker_config: Path, connect: Callable[..., tuple[DockerEngine, Transport]]
) -> None:
    engine, transport = connect(
        {("GET", f"/distribution/{IMAGE}/json"): (404, {"message": "manifest unknown"})}
    )
    code, out, _ = _cli(engine, "update", "web", "--image", IMAGE, "--pin-digest", "--json")
    assert (code, json.loads(out)["code"]) == (5, "engine_error")
    assert transport.paths("POST") == []


def test_a_bad_docker_host_exits_5(docker_config: Path) -> None:
    result = CliRunner().invoke(cli, ["-H", "foo://127.0.0.1:9", "status", "web"])
    assert result.exit_code == 5
    assert result.stderr.startswith("zdd-swarm: error: DOCKER_HOST (or --host) 'foo://127.0.0.1:9'")


class _Boom(FakeEngine):
    def inspect_service(self, service: str) -> ServiceView:
        raise ZeroDivisionError("division by zero\nsecond line")


def test_an_unexpected_exception_is_exit_6_in_one_line() -> None:
    engine = _Boom(FakeClock())
    code, out, err = _cli(engine, "update", "web", "--image", "app:2")
    assert code == 6
    assert err == (
        "zdd-swarm: error: internal error: ZeroDivisionError: division by zero "
        "(-vv shows the traceback)\n"
    )
    code, out, err = _cli(engine, "status", "web", "--json")
    data = json.loads(out)
    assert code == 6
    assert (data["outcome"], data["code"], data["error"]) == (
        "error",
        "internal_error",
        "ZeroDivisionError",
    )


def test_the_traceback_of_an_unexpected_exception_is_shown_with_vv() -> None:
    code, _, err = _cli(_Boom(FakeClock()), "watch", "web", "-vv")
    assert code == 6
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError" in err
    assert err.rstrip().endswith("internal error: ZeroDivisionError: division by zero")
