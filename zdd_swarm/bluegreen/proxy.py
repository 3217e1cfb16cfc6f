"""nginx and HAProxy routers: a Swarm service that sends every request to
the active colour's service; a switch sends it to the other.

nginx: the router service mounts a Swarm config (``/etc/nginx/nginx.conf``)
that sends every request to one colour's service, resolved by Swarm's DNS
(``127.0.0.11``) while the router runs. A Swarm config cannot change, so a
switch creates the config of the other colour (once; its name carries a
hash of its text) and updates the router service to mount it, rolled
start-first through zdd_swarm's own ``Controller``: each new router task is
up and healthy before an old one stops, and the old one finishes its
requests. The switch counts once every running router task carries the new
configuration (and ``probe``, if given, names the new colour).

HAProxy: the configuration names both colours and a colour map chooses
(``haproxy.py``). A switch writes the service's label
``zdd-swarm.router.colour`` (no task restarts; a task born later takes the
colour from it), then sets the map of every running task through HAProxy's
runtime API (no reload). The switch counts once every running task answers
with the new colour (and ``probe``, if given, names it).

The service says what it is with labels (``zdd-swarm.router=nginx`` or
``haproxy``, ``zdd-swarm.router.app=<app>``); nginx's mounted config, or
HAProxy's service, says which colour it routes to (``zdd-swarm.router.colour``).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._logging import get_logger
from ..config import Order, UpdateConfig
from ..controller import Controller
from ..engine import StackEngine
from ..errors import EngineError, InputError, ServiceNotFound
from ..model import ServiceView, TaskState
from ..result import Outcome
from ..spec import ServiceChange
from . import haproxy
from .haproxy import RuntimeAPIError
from .model import Colour
from .store import relabel

__all__ = [
    "LABEL_ROUTER",
    "ProxyKind",
    "ProxyRouter",
    "RouterSwitchFailed",
    "render_colour_map",
    "render_config",
]

log = get_logger("zdd_swarm.bluegreen")

LABEL_ROUTER = "zdd-swarm.router"
"""On the router service: ``nginx`` or ``haproxy``."""
LABEL_ROUTER_APP = "zdd-swarm.router.app"
"""On the router service and its configs: the app it routes."""
LABEL_ROUTER_COLOUR = "zdd-swarm.router.colour"
"""On an nginx router config, and on an HAProxy router service: the colour
it sends traffic to."""
LABEL_ADMIN_PORT = "zdd-swarm.router.admin-port"
"""On an HAProxy router service: its runtime API's port (default 9999)."""
COLOUR_HEADER = "X-Zdd-Colour"
"""Response header the routers add: the colour their config routes to."""


class ProxyKind(enum.StrEnum):
    NGINX = "nginx"
    HAPROXY = "haproxy"

    @property
    def config_path(self) -> str:
        """Where the router reads its configuration."""
        if self is ProxyKind.NGINX:
            return "/etc/nginx/nginx.conf"
        return "/etc/haproxy/haproxy.cfg"


class RouterSwitchFailed(EngineError):
    """The router service did not roll to the new configuration."""


_NGINX = """\
# zdd_swarm blue-green router of {app}: traffic goes to {upstream}
worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    # Swarm's DNS, asked again every second: the tasks of the colour as they run
    resolver 127.0.0.11 valid=1s ipv6=off;
    server {{
        listen {listen};
        location / {{
            set $colour_upstream {upstream};
            proxy_pass http://$colour_upstream:{port};
            proxy_next_upstream error timeout http_502 http_503;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            add_header {header} {colour} always;
        }}
    }}
}}
"""


def render_config(
    kind: ProxyKind,
    app: str,
    colour: Colour | None = None,
    *,
    port: int = 8080,
    listen: int = 8080,
    admin_port: int = haproxy.ADMIN_PORT,
) -> str:
    """The router configuration of ``app``: nginx's sends all traffic to
    ``colour`` (its service, port ``port``); HAProxy's names both colours,
    its colour map chooses (``render_colour_map``; ``colour`` is not used),
    and its runtime API listens on ``admin_port``. The router listens on ``listen``."""
    if kind is ProxyKind.HAPROXY:
        return haproxy.render_haproxy(
            app, port=port, listen=listen, admin_port=admin_port, header=COLOUR_HEADER
        )
    if colour is None:
        raise ValueError("an nginx router config sends traffic to one colour: give it")
    return _NGINX.format(
        app=app,
        upstream=colour.service(app),
        colour=colour.value,
        port=port,
        listen=listen,
        header=COLOUR_HEADER,
    )


def render_colour_map() -> str:
    """HAProxy's colour map, a Swarm config template (``Templating: golang``,
    mounted at ``/etc/haproxy/colour.map``): each task is born with the
    colour of the router service's label ``zdd-swarm.router.colour``."""
    return haproxy.map_template(LABEL_ROUTER_COLOUR)


def _configs(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Configs") or [])


Send = Callable[[str, int, str], str]
"""Sends one command to HAProxy's runtime API at (address, port); returns the answer."""


@dataclass(frozen=True)
class ProxyRouter:
    """An nginx or HAProxy router service of ``app`` (see the module's docstring)."""

    engine: StackEngine
    app: str
    service: str
    kind: ProxyKind
    port: int = 8080
    """The colours' port."""
    listen: int = 8080
    """The router's port."""
    controller: Controller | None = field(default=None, compare=False)
    """nginx: rolls the router service (by default one on ``engine`` with its defaults)."""
    probe: Callable[[], Colour | None] | None = field(default=None, compare=False)
    """Asks the router's address which colour answers (``X-Zdd-Colour``)."""
    admin_port: int | None = None
    """HAProxy: its runtime API's port (None: the router service's label
    ``zdd-swarm.router.admin-port``, else 9999), published in host mode."""
    send: Send | None = field(default=None, compare=False)
    """HAProxy: how a runtime API command is sent (by default over TCP)."""

    def check(self) -> None:
        try:
            view = self.engine.inspect_service(self.service)
        except ServiceNotFound:
            raise InputError(
                f"router service {self.service!r} not found: the router runs as a Swarm "
                "service of your stack"
            ) from None
        labels = view.spec.get("Labels") or {}
        if labels.get(LABEL_ROUTER) != self.kind.value or labels.get(LABEL_ROUTER_APP) != self.app:
            raise InputError(
                f"{self.service} is not a {self.kind.value} router of {self.app}: it needs the "
                f"labels {LABEL_ROUTER}={self.kind.value} and {LABEL_ROUTER_APP}={self.app} "
                "(docs/blue-green.md)"
            )
        if self.kind is ProxyKind.HAPROXY:
            self._check_runtime(view)
        elif self._mounted(view.spec) is None:
            raise InputError(
                f"{self.service} mounts no router config of ours at {self.kind.config_path}: "
                f"a Swarm config labelled {LABEL_ROUTER_COLOUR}=blue|green (docs/blue-green.md)"
            )

    def routes(self, label: str) -> bool:
        return False

    def active(self) -> Colour | None:
        view = self.engine.inspect_service(self.service)
        if self.kind is ProxyKind.HAPROXY:
            return _labelled(view)
        return self._mounted(view.spec)

    def switch(self, to: Colour) -> None:
        if self.kind is ProxyKind.HAPROXY:
            self._switch_runtime(to)
        else:
            self._roll_to(to)

    def switched(self, to: Colour) -> bool:
        view = self.engine.inspect_service(self.service)
        if self.kind is ProxyKind.HAPROXY:
            done = self._runtime_switched(view, to)
        else:
            done = self._rolled(view, to)
        return done and (self.probe is None or self.probe() == to)

    # -- nginx: a config per colour, rolled ------------------------------------------

    def _roll_to(self, to: Colour) -> None:
        name, config_id = self._config(to)
        path = self.kind.config_path

        def mount(spec: dict[str, Any]) -> dict[str, Any]:
            container = spec["TaskTemplate"]["ContainerSpec"]
            kept = [c for c in _configs(spec) if (c.get("File") or {}).get("Name") != path]
            file = {"Name": path, "UID": "0", "GID": "0", "Mode": 0o444}
            container["Configs"] = [
                *kept,
                {"ConfigID": config_id, "ConfigName": name, "File": file},
            ]
            return spec

        # start-first: a new router task is healthy before an old one stops
        update = UpdateConfig(
            parallelism=1, order=Order.START_FIRST, monitor="2s", failure_action="rollback"
        )
        controller = self.controller or Controller(self.engine)
        result = controller.update(self.service, ServiceChange(update_config=update, patch=mount))
        if result.outcome is not Outcome.COMPLETED:
            raise RouterSwitchFailed(
                f"router {self.service} did not roll to {name}: {result.reason.message}"
            )

    def _rolled(self, view: ServiceView, to: Colour) -> bool:
        """Whether every running task of the router mounts the config of ``to``."""
        if self._mounted(view.spec) is not to:
            return False
        tasks = [t for t in self.engine.list_tasks(view.id) if t.desired_state is TaskState.RUNNING]
        template = view.spec.get("TaskTemplate") or {}
        wanted = {c.get("ConfigID") for c in template.get("ContainerSpec", {}).get("Configs") or []}
        for task in tasks:
            have = ((task.raw.get("Spec") or {}).get("ContainerSpec") or {}).get("Configs") or []
            if task.raw and {c.get("ConfigID") for c in have} != wanted:
                return False
            if not task.running:
                return False
        return bool(tasks)

    # -- HAProxy: its runtime API ----------------------------------------------------

    def _check_runtime(self, view: ServiceView) -> None:
        """The service names a colour, publishes the runtime API in host mode,
        and every running task answers with a colour."""
        if _labelled(view) is None:
            raise InputError(
                f"{self.service} needs the label {LABEL_ROUTER_COLOUR}=blue|green: the colour "
                "its colour map gives a task that starts (docs/blue-green.md)"
            )
        endpoints = self._endpoints(view)
        if not endpoints:
            raise InputError(f"router service {self.service} has no running task")
        for endpoint in endpoints:
            task_id = endpoint[0]
            try:
                colour = self._asked(endpoint)
            except RuntimeAPIError as exc:
                raise InputError(f"router task {task_id[:12]} of {self.service}: {exc}") from None
            if colour is None:
                raise InputError(
                    f"router task {task_id[:12]} of {self.service}: its colour map "
                    f"{haproxy.MAP_PATH} names no colour (docs/blue-green.md)"
                )

    def _switch_runtime(self, to: Colour) -> None:
        """The label first (a task born from now on takes ``to``), then every
        running task; one that does not take it is told again by ``switched``."""
        view = relabel(self.engine, self.service, {LABEL_ROUTER_COLOUR: to.value})
        for endpoint in self._endpoints(view):
            self._tell(endpoint, to)

    def _runtime_switched(self, view: ServiceView, to: Colour) -> bool:
        """Whether the label names ``to`` and every running task answers ``to``."""
        if _labelled(view) is not to:
            return False
        endpoints = self._endpoints(view)
        done = bool(endpoints)
        for endpoint in endpoints:
            try:
                colour = self._asked(endpoint)
            except RuntimeAPIError as exc:
                log.info(
                    "router_task_unanswered", service=self.service, task=endpoint[0], error=str(exc)
                )
                done = False
                continue
            if colour is not to:
                # a task created just before the label changed was born with the old colour
                self._tell(endpoint, to)
                done = False
        return done

    def _asked(self, endpoint: tuple[str, str, int]) -> Colour | None:
        """The colour a task's colour map names (``RuntimeAPIError``: no answer)."""
        _, address, port = endpoint
        return haproxy.parse_show_map(self._send(address, port, haproxy.show_map_command()))

    def _tell(self, endpoint: tuple[str, str, int], to: Colour) -> None:
        task_id, address, port = endpoint
        try:
            haproxy.parse_set_map(self._send(address, port, haproxy.set_map_command(to)))
        except RuntimeAPIError as exc:
            log.warning(
                "router_task_not_switched", service=self.service, task=task_id, error=str(exc)
            )

    def _endpoints(self, view: ServiceView) -> list[tuple[str, str, int]]:
        """(task id, node address, port) of each running task's runtime API."""
        admin = self.admin_port
        if admin is None:
            text = (view.spec.get("Labels") or {}).get(LABEL_ADMIN_PORT, "")
            admin = int(text) if text.isdigit() else haproxy.ADMIN_PORT
        published = dict(view.host_ports)
        if admin not in published:
            raise InputError(
                f"{self.service} does not publish HAProxy's runtime API (port {admin}) in host "
                "mode: the switch reaches each router task at its node's address "
                "(docs/blue-green.md)"
            )
        nodes = {n.id: n.address for n in self.engine.list_nodes()}
        return [
            (t.id, nodes.get(t.node_id, ""), dict(t.host_ports).get(admin) or published[admin])
            for t in self.engine.list_tasks(view.id)
            if t.desired_state is TaskState.RUNNING and t.running
        ]

    def _send(self, address: str, port: int, command: str) -> str:
        if not address:
            raise RuntimeAPIError("the router task's node has no address")
        return (self.send or haproxy.send_command)(address, port, command)

    # -- nginx's configs ------------------------------------------------------------------

    def _mounted(self, spec: Mapping[str, Any]) -> Colour | None:
        """The colour of the router config the spec mounts (None: none of ours)."""
        mounted = [
            c for c in _configs(spec) if (c.get("File") or {}).get("Name") == self.kind.config_path
        ]
        if len(mounted) != 1:
            return None
        for config in self.engine.list_objects("config", {}):
            if config.id == mounted[0].get("ConfigID"):
                try:
                    return Colour(config.labels.get(LABEL_ROUTER_COLOUR, ""))
                except ValueError:
                    return None
        return None

    def _config(self, colour: Colour) -> tuple[str, str]:
        """The router config of ``colour``: (name, id), created if missing."""
        text = render_config(self.kind, self.app, colour, port=self.port, listen=self.listen)
        digest = hashlib.sha256(text.encode()).hexdigest()[:10]
        name = f"{self.service}-{colour.value}-{digest}"
        for config in self.engine.list_objects("config", {LABEL_ROUTER_APP: self.app}):
            if config.name == name:
                return name, config.id
        labels = {
            LABEL_ROUTER: self.kind.value,
            LABEL_ROUTER_APP: self.app,
            LABEL_ROUTER_COLOUR: colour.value,
        }
        config_id = self.engine.create_object(
            "config", {"Name": name, "Labels": labels, "Data": text.encode()}
        )
        return name, config_id


def _labelled(view: ServiceView) -> Colour | None:
    """The colour the service's label ``zdd-swarm.router.colour`` names."""
    try:
        return Colour((view.spec.get("Labels") or {}).get(LABEL_ROUTER_COLOUR, ""))
    except ValueError:
        return None
