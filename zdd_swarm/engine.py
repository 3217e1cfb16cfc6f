"""The one module that owns ``docker``: the engine adapter.

Everything above it speaks the project's own types (``zdd_swarm.model``)
and errors (``zdd_swarm.errors``). Errors of docker-py and ``requests``
are mapped here, once. Single API calls are retried with tenacity when a
retry can help (engine unreachable); whole rollouts never are.

``Engine`` is the seam: the controller takes any object with these
methods, and ``zdd_swarm.testing`` provides a fake one.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import docker
import docker.auth
import docker.constants
import docker.errors
import docker.utils.config
import requests.exceptions
import tenacity

from ._logging import get_logger
from .errors import (
    DockerConfigError,
    EngineAPIError,
    EngineUnavailable,
    InvalidImageReference,
    NotAManager,
    ServiceNotFound,
    VersionConflict,
    ZddError,
)
from .model import ResolvedImage, ServiceView, TaskView

__all__ = [
    "DockerEngine",
    "Engine",
    "EngineInfo",
    "NodeView",
    "ServiceEvents",
    "StackEngine",
    "SwarmObject",
]

log = get_logger("zdd_swarm.engine")
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
    address: str = ""
    """The node's address as the manager knows it (``Status.Addr``)."""


@dataclass(frozen=True)
class SwarmObject:
    """A network, secret or config: what a stack needs to know of it."""

    id: str
    name: str
    labels: Mapping[str, str]


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

    def resolve_image(self, image: str) -> ResolvedImage:
        """``image`` as its registry knows it: its digest (``sha256:...``) and
        the platforms of its manifest list (what ``--pin-digest`` pins)."""
        ...

    def image_healthcheck(self, image: str) -> Mapping[str, Any] | bool | None:
        """The image's HEALTHCHECK if the engine has the image, False if it
        has none, None if unknown."""
        ...

    # Optional: ``service_events(service_id) -> ServiceEvents | None``, the
    # engine's event stream of one service; without it the controller polls.


class StackEngine(Engine, Protocol):
    """What a stack deploy needs beyond ``Engine``: services created, listed
    by label and removed; networks, secrets and configs (``kind`` is
    ``"network"``, ``"secret"`` or ``"config"``) listed by label, created and
    removed. Secret values go to the engine and are never returned."""

    def list_services(self, labels: Mapping[str, str]) -> list[ServiceView]: ...

    def create_service(self, spec: Mapping[str, Any]) -> str:
        """Create a service; returns its id."""
        ...

    def remove_service(self, service: str) -> None: ...

    def list_objects(self, kind: str, labels: Mapping[str, str]) -> list[SwarmObject]: ...

    def create_object(self, kind: str, spec: Mapping[str, Any]) -> str:
        """Create a network (``Name``, ``Driver``, ``Labels``, ``Attachable``,
        ``Internal``, ``Options``), a secret or a config (``Name``,
        ``Labels``, ``Data`` as bytes); returns its id."""
        ...

    def remove_object(self, kind: str, object_id: str) -> None: ...

    def relabel_config(self, config_id: str, labels: Mapping[str, str]) -> None:
        """Replace the labels of a config (the only part of it the engine lets
        change), at the version just inspected."""
        ...


class ServiceEvents:
    """The engine's events of one service, read on a background thread.

    Swarm's manager emits a service event for every change of the service
    object, its ``UpdateStatus`` included (moby ``daemon/events.go``,
    ``logServiceEvent``: "if service.UpdateStatus != nil { ...
    attributes["updatestate.new"] = ..."), so a
    state the engine decides (completed, paused, its own rollback) is known
    at once instead of at the next poll. ``wait(timeout)`` sleeps like
    ``time.sleep`` but returns True as soon as an event has arrived. A stream
    that fails or ends only stops the early wake-ups: the poll goes on, so
    no verdict depends on an event arriving.
    """

    def __init__(self, open_stream: Callable[[], Any]) -> None:
        self._open = open_stream
        self._arrived = threading.Event()
        self._stream: Any = None
        self._closed = False
        #: False once the stream failed or ended (polling alone from then on)
        self.alive = True
        #: the ``updatestate.new`` of the last event, None if it had none
        self.update_state: str | None = None
        self._thread = threading.Thread(target=self._read, name="zdd-swarm-events", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            self._stream = self._open()
            if self._closed:
                self._stream.close()
                return
            for event in self._stream:
                actor = event.get("Actor") if isinstance(event, dict) else None
                attributes = (actor or {}).get("Attributes") or {}
                self.update_state = attributes.get("updatestate.new")
                self._arrived.set()
        except Exception as exc:  # the poll carries on without the stream
            if not self._closed:
                log.debug("event_stream_lost", error=str(exc))
        finally:
            self.alive = False

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True if an event arrived meanwhile
        (or since the last call)."""
        woke = self._arrived.wait(timeout) if timeout > 0 else self._arrived.is_set()
        self._arrived.clear()
        return woke

    def close(self) -> None:
        self._closed = True
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()


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
                with _mapped_errors(), _setup_errors(self.host):
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

    def service_events(self, service_id: str) -> ServiceEvents | None:
        """The event stream of one service (``/events`` filtered by type
        ``service``), or None where it is not used: over ``ssh://`` the
        docker SDK cannot close a stream it is reading (the SSH channel
        stays blocked until the next event)."""
        host = self.host if self.host is not None else os.environ.get("DOCKER_HOST", "")
        if host.startswith("ssh://"):
            return None
        api = self._api
        filters = {"type": ["service"], "service": [service_id]}

        def open_stream() -> Any:
            with _mapped_errors():
                self.requests += 1
                return api.events(filters=filters, decode=True)

        return ServiceEvents(open_stream)

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
                address=_node_address(n),
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
        image = str(((body.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image", ""))

        def send() -> Any:
            # the credentials are read here, inside the mapped call: a broken
            # config file or credential helper is our error, not a traceback
            headers = _registry_auth(api, image) if image and not rollback else {}
            url = api._url("/services/{0}/update", service.id)
            response = api._post_json(url, data=dict(body), params=params, headers=headers)
            return api._result(response, json=True)

        result = self._call(send)
        return [str(w) for w in (result or {}).get("Warnings") or []]

    # -- StackEngine -----------------------------------------------------------

    def list_services(self, labels: Mapping[str, str]) -> list[ServiceView]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        data = self._call(lambda: self._api.services(filters=filters))
        return [ServiceView.from_api(s) for s in data]

    def create_service(self, spec: Mapping[str, Any]) -> str:
        api = self._api
        image = str(((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image", ""))

        def send() -> Any:
            # docker-py's create_service rebuilds the spec from its arguments;
            # the spec is posted as it is, with the credentials as for an update
            headers = _registry_auth(api, image) if image else {}
            url = api._url("/services/create")
            return api._result(api._post_json(url, data=dict(spec), headers=headers), json=True)

        return str(self._call(send)["ID"])

    def remove_service(self, service: str) -> None:
        with _service_not_found(service):
            self._call(lambda: self._api.remove_service(service))

    def list_objects(self, kind: str, labels: Mapping[str, str]) -> list[SwarmObject]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        api = self._api
        calls: dict[str, Callable[[], Any]] = {
            "network": lambda: api.networks(filters=filters),
            "secret": lambda: api.secrets(filters=filters),
            "config": lambda: api.configs(filters=filters),
        }
        data = self._call(calls[kind])
        found = []
        for item in data:
            spec = item.get("Spec") or item  # networks have no Spec
            found.append(
                SwarmObject(
                    id=str(item["Id"] if "Id" in item else item["ID"]),
                    name=str(spec.get("Name", "")),
                    labels=dict(spec.get("Labels") or {}),
                )
            )
        return found

    def create_object(self, kind: str, spec: Mapping[str, Any]) -> str:
        api = self._api
        name = str(spec["Name"])
        labels = dict(spec.get("Labels") or {})
        if kind == "network":
            data = self._call(
                lambda: api.create_network(
                    name,
                    driver=spec.get("Driver") or "overlay",
                    options=spec.get("Options") or None,
                    labels=labels,
                    attachable=bool(spec.get("Attachable")),
                    internal=bool(spec.get("Internal")),
                )
            )
        elif kind == "secret":
            data = self._call(lambda: api.create_secret(name, spec["Data"], labels=labels))
        else:
            data = self._call(lambda: api.create_config(name, spec["Data"], labels=labels))
        return str(data.get("Id") or data.get("ID"))

    def remove_object(self, kind: str, object_id: str) -> None:
        api = self._api
        calls: dict[str, Callable[[], Any]] = {
            "network": lambda: api.remove_network(object_id),
            "secret": lambda: api.remove_secret(object_id),
            "config": lambda: api.remove_config(object_id),
        }
        self._call(calls[kind])

    def relabel_config(self, config_id: str, labels: Mapping[str, str]) -> None:
        # docker-py has no call for it. swarmkit manager/controlapi/config.go,
        # UpdateConfig: "We only allow updating Labels"; a Spec without Data
        # keeps the config's data ("request.Spec.Data != nil && ...").
        api = self._api

        def send() -> Any:
            found = api.inspect_config(config_id)
            spec = {"Name": found["Spec"]["Name"], "Labels": dict(labels)}
            url = api._url("/configs/{0}/update", config_id)
            params = {"version": found["Version"]["Index"]}
            return api._result(api._post_json(url, data=spec, params=params))

        self._call(send)

    def resolve_image(self, image: str) -> ResolvedImage:
        def inspect() -> Any:
            # docker-py's inspect_distribution, with the credentials read as
            # for an update (the engine asks the registry with them)
            api = self._api
            headers = _registry_auth(api, image)
            url = api._url("/distribution/{0}/json", image)
            return api._result(api._get(url, headers=headers), json=True)

        try:
            data = self._call(inspect)
        except EngineAPIError as exc:
            raise EngineAPIError(
                f"cannot resolve {image!r} to a registry digest: {exc}", exc.status_code
            ) from exc
        try:
            return ResolvedImage.from_api(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineAPIError(
                f"cannot resolve {image!r} to a registry digest: the engine's answer has none"
            ) from exc

    def image_healthcheck(self, image: str) -> Mapping[str, Any] | bool | None:
        try:
            data = self._call(lambda: self._api.inspect_image(image))
        except EngineAPIError:
            return None
        check = (data.get("Config") or {}).get("Healthcheck")
        if not check or check.get("Test") in (None, [], ["NONE"]):
            return False
        return dict(check)


def _node_address(node: Mapping[str, Any]) -> str:
    """``Status.Addr``; for a manager that reports ``0.0.0.0`` there (its
    advertise address left to the engine), the host of ``ManagerStatus.Addr``."""
    address = str((node.get("Status") or {}).get("Addr", ""))
    manager = str((node.get("ManagerStatus") or {}).get("Addr", ""))
    if address in ("", "0.0.0.0") and manager:
        return manager.rsplit(":", 1)[0].strip("[]")
    return address


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


def _registry_auth(api: Any, image: str) -> dict[str, Any]:
    """The ``X-Registry-Auth`` header for ``image`` from the docker config
    file and its credential helpers, as docker-py builds it; empty without
    credentials. Whatever fails on the way is a ``DockerConfigError`` that
    names the registry and the config file."""
    config_file = _checked_config_file()
    try:
        registry, _ = docker.auth.resolve_repository_name(image)
    except docker.errors.InvalidRepository as exc:
        raise InvalidImageReference(image, str(exc)) from exc
    try:
        with warnings.catch_warnings():
            # docker-py warns of a credential helper missing from PATH, then
            # fails on it: the error below says it once
            warnings.simplefilter("ignore")
            header = docker.auth.get_config_header(api, registry)
    except Exception as exc:
        source = f" (docker config file {config_file})" if config_file else ""
        raise DockerConfigError(
            f"cannot read the credentials for registry {registry}{source}: {exc}"
        ) from exc
    return {"X-Registry-Auth": header} if header else {}


def _checked_config_file() -> str | None:
    """The docker config file in use (``$DOCKER_CONFIG/config.json``, then
    ``~/.docker/config.json``), checked to be a readable JSON object.

    docker-py skips a file it cannot parse and sends no credentials at all;
    the nodes then cannot pull a private image and a good release would be
    rolled back. The docker CLI warns (``WARNING: Error loading config
    file``); we stop before anything is sent and name the file."""
    path = _config_file()
    if path is None or os.path.basename(path) == ".dockercfg":
        return None  # the legacy file is not JSON
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise DockerConfigError(
            f"cannot read the docker config file {path}: {exc.strerror or exc}"
        ) from exc
    except ValueError as exc:
        raise DockerConfigError(f"the docker config file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DockerConfigError(f"the docker config file {path} is not a JSON object")
    return path


def _config_file() -> str | None:
    path = docker.utils.config.find_config_file()
    return path if isinstance(path, str) else None


@contextmanager
def _setup_errors(host: str | None) -> Iterator[None]:
    """Name the setting behind a failure to build the docker client (inside
    ``_mapped_errors``, which still maps an engine that cannot be reached)."""
    try:
        yield
    except (ZddError, docker.errors.APIError, requests.exceptions.RequestException, OSError):
        raise
    except docker.errors.DockerException as exc:
        if _unreachable(exc):
            raise
        raise DockerConfigError(_setup_problem(exc, host)) from exc
    except Exception as exc:
        if type(exc).__module__.startswith("paramiko"):
            raise
        # docker-py reads the config file and parses the host before it
        # sends anything; it fails on both with errors of its own (a config
        # file that is a JSON list, a port that is not a number)
        _checked_config_file()
        raise DockerConfigError(_setup_problem(exc, host)) from exc


def _setup_problem(exc: Exception, host: str | None) -> str:
    text = str(exc)
    url = host if host is not None else os.environ.get("DOCKER_HOST", "")
    if "Install paramiko" in text:
        return "ssh:// engines need the docker SDK's SSH transport: pip install 'zdd-swarm[ssh]'"
    if "Invalid bind address" in text or "protocol is not implemented" in text:
        return (
            f"DOCKER_HOST (or --host) {url!r} is not a docker host URL "
            f"(unix://, tcp://HOST:PORT, ssh://USER@HOST): {text}"
        )
    if isinstance(exc, docker.errors.TLSParameterError):
        return (
            "the TLS files cannot be used (DOCKER_CERT_PATH="
            f"{os.environ.get('DOCKER_CERT_PATH', '')!r} needs ca.pem, cert.pem, key.pem): "
            f"{exc.msg}"
        )
    if isinstance(exc, docker.errors.InvalidConfigFile):
        return f"the docker config file {_config_file()} cannot be used: {text}"
    if not isinstance(exc, docker.errors.DockerException):
        text = f"{type(exc).__name__}: {text}"
    return f"cannot set up the docker client for DOCKER_HOST (or --host) {url!r}: {text}"


def _unreachable(exc: docker.errors.DockerException) -> bool:
    """docker-py wraps a failure to reach the engine while it negotiates the
    API version in a plain ``DockerException``."""
    return isinstance(exc.__context__, requests.exceptions.RequestException) or (
        "Error while fetching server API version" in str(exc)
    )


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
        # a problem of the client's own setup is named where the client is
        # built (_setup_errors) or the credentials are read (_registry_auth)
        if _unreachable(exc):
            raise EngineUnavailable(f"cannot reach the Docker engine: {exc}") from exc
        raise EngineAPIError(f"cannot use the Docker engine: {exc}") from exc
    except Exception as exc:
        # ssh:// goes through paramiko, whose errors (unknown host key,
        # authentication refused) are not docker-py's.
        if type(exc).__module__.startswith("paramiko"):
            raise EngineAPIError(f"cannot use the Docker engine over SSH: {exc}") from exc
        raise
