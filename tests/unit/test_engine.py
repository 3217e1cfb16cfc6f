"""The engine adapter maps docker-py's errors to the project's own, without an engine."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import docker.errors
import pytest
import requests

from zdd_swarm.engine import _keep_engine_ca, _mapped_errors
from zdd_swarm.errors import EngineAPIError, EngineUnavailable, NotAManager, VersionConflict


def _api_error(message: str, status: int) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(message, response, explanation=message)


@pytest.mark.parametrize(
    "raised, expected",
    [
        (
            _api_error("rpc error: code = Unknown desc = update out of sequence", 500),
            VersionConflict,
        ),
        (_api_error("This node is not a swarm manager.", 503), NotAManager),
        (_api_error("invalid mount config", 400), EngineAPIError),
        (requests.exceptions.ConnectionError("refused"), EngineUnavailable),
        (
            docker.errors.DockerException("Error while fetching server API version: x"),
            EngineUnavailable,
        ),
        (docker.errors.TLSParameterError("bad cert path"), EngineAPIError),
    ],
)
def test_docker_errors_map_to_ours(raised: Exception, expected: type[Exception]) -> None:
    with pytest.raises(expected), _mapped_errors():
        raise raised


def test_ssh_host_without_the_ssh_extra_says_what_to_install() -> None:
    # docker-py's own message when paramiko is not installed, in a process
    # where it cannot be imported
    code = textwrap.dedent("""
        import sys
        sys.modules["paramiko"] = None
        from zdd_swarm import DockerConfigError, DockerEngine
        try:
            DockerEngine("ssh://deploy@127.0.0.1:1").info()
        except DockerConfigError as exc:
            print(exc)
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "pip install 'zdd-swarm[ssh]'" in out


def test_the_engine_ca_wins_over_requests_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    # docker-py puts DOCKER_CERT_PATH's ca.pem in the session's verify; requests
    # would let REQUESTS_CA_BUNDLE override it for every request.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    session = requests.Session()
    session.verify = "/certs/ca.pem"
    url = "https://127.0.0.1:2376/v1.41/info"
    assert session.merge_environment_settings(url, {}, False, None, None)["verify"] == (
        "/etc/ssl/certs/ca-certificates.crt"
    )
    _keep_engine_ca(session)
    assert session.merge_environment_settings(url, {}, False, None, None)["verify"] == (
        "/certs/ca.pem"
    )
    assert session.merge_environment_settings(url, {}, False, False, None)["verify"] is False


def test_a_removed_service_is_not_found_for_its_tasks_too() -> None:
    # engine 20.10 answers the task list of a removed service with a 404
    from zdd_swarm.engine import _service_not_found
    from zdd_swarm.errors import ServiceNotFound

    with pytest.raises(ServiceNotFound), _service_not_found("web"), _mapped_errors():
        raise _api_error("service lu1pwph6d31q not found", 404)
    with pytest.raises(EngineAPIError), _service_not_found("web"), _mapped_errors():
        raise _api_error("invalid filter", 400)


class _StackApi:
    """The few docker-py APIClient calls of the stack methods, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def networks(self, filters: object) -> list[dict[str, object]]:
        self.calls.append(("networks", filters))
        return [{"Id": "n1", "Name": "shop_backend", "Labels": {"a": "b"}}]

    def secrets(self, filters: object) -> list[dict[str, object]]:
        return [{"ID": "s1", "Spec": {"Name": "shop_token", "Labels": {}}}]

    def create_secret(self, name: str, data: bytes, labels: object) -> dict[str, str]:
        self.calls.append(("create_secret", (name, labels)))
        return {"ID": "s2"}

    def remove_service(self, service: str) -> None:
        raise _api_error("service shop_web not found", 404)

    def remove_network(self, network: str) -> None:
        raise _api_error("network shop_backend is in use", 403)


def test_stack_calls_are_typed_and_their_errors_mapped() -> None:
    from types import SimpleNamespace
    from typing import Any

    from zdd_swarm.engine import DockerEngine, SwarmObject
    from zdd_swarm.errors import ServiceNotFound

    api = _StackApi()
    client: Any = SimpleNamespace(api=api)
    engine = DockerEngine(client=client, retry_for=0)
    assert engine.list_objects("network", {"com.docker.stack.namespace": "shop"}) == [
        SwarmObject("n1", "shop_backend", {"a": "b"})
    ]
    assert api.calls[0] == ("networks", {"label": ["com.docker.stack.namespace=shop"]})
    assert engine.list_objects("secret", {}) == [SwarmObject("s1", "shop_token", {})]
    assert engine.create_object("secret", {"Name": "t", "Labels": {}, "Data": b"x"}) == "s2"
    with pytest.raises(ServiceNotFound):
        engine.remove_service("shop_web")
    with pytest.raises(EngineAPIError, match="in use"):
        engine.remove_object("network", "n1")


def test_nodes_carry_the_address_the_manager_knows_them_by() -> None:
    """JSON kept from engine 28.5 (the lab's three nodes); a manager that
    reports ``Status.Addr`` 0.0.0.0 is known by its ``ManagerStatus.Addr``."""
    import json
    from pathlib import Path
    from types import SimpleNamespace
    from typing import Any

    from zdd_swarm.engine import DockerEngine

    nodes = json.loads((Path(__file__).parent.parent / "fixtures" / "nodes.json").read_text())
    client: Any = SimpleNamespace(api=SimpleNamespace(nodes=lambda: nodes))
    found = {n.hostname: n.address for n in DockerEngine(client=client, retry_for=0).list_nodes()}
    assert found == {"zdd5-n1": "10.88.5.11", "zdd5-n2": "10.88.5.12", "zdd5-n3": "10.88.5.13"}
    manager = next(n for n in nodes if n.get("ManagerStatus"))
    manager["Status"]["Addr"] = "0.0.0.0"
    listed = DockerEngine(client=client, retry_for=0).list_nodes()
    assert {n.hostname: n.address for n in listed}["zdd5-n1"] == "10.88.5.11"
