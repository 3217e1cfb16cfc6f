"""The one module that owns ``docker``: the engine adapter.

Everything above it speaks the project's own types (``zdd_swarm.model``)
and errors (``zdd_swarm.errors``). Errors of docker-py and ``requests``
are mapped here, once. Single API calls are retried with tenacity when a
retry can help (engine unreachable); whole rollouts never are.

``Engine`` is the seam: the controller takes any object with these
methods, and ``zdd_swarm.testing`` provides a fake one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import docker
import docker.auth
import docker.constants
import docker.errors
import requests.exceptions
import structlog
import tenacity

from .errors import (
    EngineAPIError,
    EngineUnavailable,
    NotAManager,
    ServiceNotFound,
    VersionConflict,
    ZddError,
)
from .model import ServiceView, TaskView

__all__ = ["DockerEngine", "Engine", "EngineInfo", "NodeView"]

log = structlog.get_logger("zdd_swarm.engine")
T = TypeVar("T")


@dataclass(frozen=True)
class EngineInfo:
    server_version: str
    api_version: str
    is_manager: bool
    node_id: str


@dataclass(frozen=True)
class NodeView:
    id: str
    hostname: str
    state: str
    availability: str
    role: str


class Engine(Protocol):
    """What the controller needs from a Docker engine (a swarm manager)."""

    def info(self) -> EngineInfo: ...

    def inspect_service(self, service: str) -> ServiceView: ...

    def list_tasks(self, service_id: str) -> list[TaskView]: ...

    def list_nodes(self) -> list[NodeView]: ...

    def update_service(
        self, service: ServiceView, spec: Mapping[str, Any], *, rollback: bool = False
    ) -> list[str]:
        """Send ``spec`` at ``service.version``; with ``rollback`` ask the
        engine for its own rollback to the previous spec instead (``spec`` is
        then ignored). Returns the engine's warnings. Raises
        ``VersionConflict`` if the service changed since ``service``."""
        ...

    def resolve_digest(self, image: str) -> str:
        """The registry digest (``sha256:...``) of ``image``."""
        ...

    def image_healthcheck(self, image: str) -> Mapping[str, Any] | bool | None:
        """The image's HEALTHCHECK if the engine has the image, False if it
        has none, None if unknown."""
        ...


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, EngineUnavailable)


class DockerEngine:
    """``Engine`` over docker-py.

    ``host`` is a docker host URL (``unix://``, ``tcp://``, ``ssh://``);
    None takes the environment as the docker CLI does (``DOCKER_HOST``,
    ``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``). Calls that cannot reach
    the engine are retried with exponential backoff for at most
    ``retry_for`` seconds, then raise ``EngineUnavailable``.
    """

    def __init__(
        self,
        host: str | None = None,
        *,
        timeout: float = 30.0,
        retry_for: float = 30.0,
        client: docker.DockerClient | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.host = host
        self._timeout = timeout
        self._client = client
        self._lock = threading.Lock()
        #: Engine API requests made so far (for benchmarks and rate checks).
        self.requests = 0
        retrying_kwargs: dict[str, Any] = {}
        if sleep is not None:
            retrying_kwargs["sleep"] = sleep
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_is_connection_error),
            wait=tenacity.wait_exponential(multiplier=0.5, max=5),
            stop=tenacity.stop_after_delay(retry_for),
            reraise=True,
            before_sleep=self._log_retry,
            **retrying_kwargs,
        )

    @staticmethod
    def _log_retry(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("engine_retry", attempt=state.attempt_number, error=str(exc))

    # -- plumbing -------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                with _mapped_errors():
                    # from_env honours DOCKER_TLS_VERIFY / DOCKER_CERT_PATH, also
                    # for an explicit host (as the docker CLI's -H does).
                    environment = dict(os.environ)
                    if self.host is not None:
                        environment["DOCKER_HOST"] = self.host
                    # the API version is asked of the engine only once the
                    # CA is settled (docker-py would ask while constructing)
                    client = docker.from_env(
                        environment=environment,
                        timeout=int(self._timeout),
                        version=docker.constants.MINIMUM_DOCKER_API_VERSION,
                    )
                    api: Any = client.api  # private members, untyped in the stubs
                    _keep_engine_ca(api)
                    api._version = api._retrieve_server_version()
                    self._client = client
            return self._client

    @property
    def _api(self) -> Any:
        # docker-py's stubs leave much of APIClient untyped; keep Any at this seam.
        return self.client.api

    def _call(self, fn: Callable[[], T]) -> T:
        def once() -> T:
            with _mapped_errors():
                self.requests += 1
                return fn()

        return self._retrying(once)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # -- Engine ---------------------------------------------------------------

    def info(self) -> EngineInfo:
        data = self._call(lambda: self._api.info())
        version = self._call(lambda: self._api.version())
        swarm = data.get("Swarm") or {}
        return EngineInfo(
            server_version=str(version.get("Version", "")),
            api_version=str(version.get("ApiVersion", "")),
            is_manager=bool(swarm.get("ControlAvailable")),
            node_id=str(swarm.get("NodeID", "")),
        )

    def inspect_service(self, service: str) -> ServiceView:
        with _service_not_found(service):
            data = self._call(lambda: self._api.inspect_service(service))
        return ServiceView.from_api(data)

    def list_tasks(self, service_id: str) -> list[TaskView]:
        # the engine answers 404 for a service filter naming a removed service
        with _service_not_found(service_id):
            data = self._call(lambda: self._api.tasks(filters={"service": service_id}))
        return [TaskView.from_api(t) for t in data if t.get("ServiceID") == service_id]

    def list_nodes(self) -> list[NodeView]:
        data = self._call(lambda: self._api.nodes())
        return [
            NodeView(
                id=str(n["ID"]),
                hostname=str((n.get("Description") or {}).get("Hostname", "")),
                state=str((n.get("Status") or {}).get("State", "")),
                availability=str((n.get("Spec") or {}).get("Availability", "")),
                role=str((n.get("Spec") or {}).get("Role", "")),
            )
            for n in data
        ]

    def update_service(
        self, service: ServiceView, spec: Mapping[str, Any], *, rollback: bool = False
    ) -> list[str]:
        api = self._api
        params: dict[str, Any] = {"version": service.version}
        body: Mapping[str, Any] = spec
        if rollback:
            # docker-py has no call for the engine's own rollback; the docker
            # CLI sends the current spec with rollback=previous.
            params["rollback"] = "previous"
            body = service.spec
        headers: dict[str, Any] = {}
        image = str(((body.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image", ""))
        if image and not rollback:
            registry, _ = docker.auth.resolve_repository_name(image)
            header = docker.auth.get_config_header(api, registry)
            if header:
                headers["X-Registry-Auth"] = header
        url = api._url("/services/{0}/update", service.id)

        def send() -> Any:
            response = api._post_json(url, data=dict(body), params=params, headers=headers)
            return api._result(response, json=True)

        result = self._call(send)
        return [str(w) for w in (result or {}).get("Warnings") or []]

    def resolve_digest(self, image: str) -> str:
        data = self._call(lambda: self._api.inspect_distribution(image))
        return str(data["Descriptor"]["digest"])

    def image_healthcheck(self, image: str) -> Mapping[str, Any] | bool | None:
        try:
            data = self._call(lambda: self._api.inspect_image(image))
        except EngineAPIError:
            return None
        check = (data.get("Config") or {}).get("Healthcheck")
        if not check or check.get("Test") in (None, [], ["NONE"]):
            return False
        return dict(check)


def _keep_engine_ca(api: Any) -> None:
    """Verify a TLS engine against the CA of ``DOCKER_CERT_PATH``, as the
    docker CLI does. docker-py sets it as the session's ``verify``, but
    requests, for a request without its own ``verify``, takes
    ``REQUESTS_CA_BUNDLE`` (or ``CURL_CA_BUNDLE``) from the environment
    first, and the engine's certificate then fails to verify. Proxy settings
    from the environment still apply."""
    ca = api.verify
    if not isinstance(ca, str):
        return
    merge = api.merge_environment_settings

    def merge_keeping_ca(
        url: str, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        settings: dict[str, Any] = merge(url, proxies, stream, verify, cert)
        settings["verify"] = ca if verify is None else verify
        return settings

    api.merge_environment_settings = merge_keeping_ca


@contextmanager
def _service_not_found(service: str) -> Iterator[None]:
    try:
        yield
    except EngineAPIError as exc:
        if exc.status_code == 404:
            raise ServiceNotFound(service) from exc
        raise


@contextmanager
def _mapped_errors() -> Iterator[None]:
    """Map docker-py and requests errors to the project's own, once."""
    try:
        yield
    except ZddError:
        raise
    except docker.errors.APIError as exc:
        message = str(exc.explanation or exc)
        status = exc.status_code
        if "update out of sequence" in message:
            raise VersionConflict(message) from exc
        if "not a swarm manager" in message or "swarm mode" in message.lower():
            raise NotAManager(f"the engine is not a swarm manager: {message}") from exc
        raise EngineAPIError(message, status) from exc
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, OSError) as exc:
        raise EngineUnavailable(f"cannot reach the Docker engine: {exc}") from exc
    except docker.errors.DockerException as exc:
        # docker-py wraps connection failures while negotiating the API
        # version; anything else (bad TLS settings, no paramiko for ssh://)
        # is a configuration problem that no retry will fix.
        if isinstance(exc.__context__, requests.exceptions.RequestException) or (
            "Error while fetching server API version" in str(exc)
        ):
            raise EngineUnavailable(f"cannot reach the Docker engine: {exc}") from exc
        if "Install paramiko" in str(exc):
            raise EngineAPIError(
                "ssh:// engines need the docker SDK's SSH transport: pip install 'zdd-swarm[ssh]'"
            ) from exc
        raise EngineAPIError(f"cannot use the Docker engine: {exc}") from exc
    except Exception as exc:
        # ssh:// goes through paramiko, whose errors (unknown host key,
        # authentication refused) are not docker-py's.
        if type(exc).__module__.startswith("paramiko"):
            raise EngineAPIError(f"cannot use the Docker engine over SSH: {exc}") from exc
        raise
