"""nginx and HAProxy routers: a Swarm service whose configuration names the
active colour's service; a switch swaps that configuration.

The router service mounts a Swarm config (``/etc/nginx/nginx.conf`` or
``/etc/haproxy/haproxy.cfg``) that sends every request to one colour's
service, resolved by Swarm's DNS (``127.0.0.11``) while the router runs. A
Swarm config cannot change, so a switch creates the config of the other
colour (once; its name carries a hash of its text) and updates the router
service to mount it, rolled start-first through zdd_swarm's own
``Controller``: each new router task is up and healthy before an old one
stops, and the old one finishes its requests. The switch counts once every
running router task carries the new configuration (and ``probe``, if
given, names the new colour).

The service says what it is with labels (``zdd-swarm.router=nginx`` or
``haproxy``, ``zdd-swarm.router.app=<app>``); the mounted config says
which colour it routes to (``zdd-swarm.router.colour``).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import Order, UpdateConfig
from ..controller import Controller
from ..engine import StackEngine
from ..errors import EngineError, InputError, ServiceNotFound
from ..model import TaskState
from ..result import Outcome
from ..spec import ServiceChange
from .model import Colour

__all__ = ["LABEL_ROUTER", "ProxyKind", "ProxyRouter", "RouterSwitchFailed", "render_config"]

LABEL_ROUTER = "zdd-swarm.router"
"""On the router service: ``nginx`` or ``haproxy``."""
LABEL_ROUTER_APP = "zdd-swarm.router.app"
"""On the router service and its configs: the app it routes."""
LABEL_ROUTER_COLOUR = "zdd-swarm.router.colour"
"""On a router config: the colour it sends traffic to."""
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

_HAPROXY = """\
# zdd_swarm blue-green router of {app}: traffic goes to {upstream}
global
    log stderr format raw local0 warning
defaults
    mode http
    log global
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch 1
# Swarm's DNS, asked again every second: the tasks of the colour as they run
resolvers swarm
    nameserver dns 127.0.0.11:53
    hold valid 1s
    accepted_payload_size 8192
frontend router
    bind :{listen}
    http-response set-header {header} {colour}
    default_backend {colour}
# no health checks: a server coming from DNS would wait for them, with no
# server up meanwhile (503); Swarm's DNS lists only healthy tasks, and a
# refused connection is retried on another server
backend {colour}
    balance roundrobin
    server-template task 16 {upstream}:{port} resolvers swarm init-addr libc,none
"""


def render_config(
    kind: ProxyKind, app: str, colour: Colour, *, port: int = 8080, listen: int = 8080
) -> str:
    """The router configuration that sends all traffic of ``app`` to ``colour``
    (its service, port ``port``); the router listens on ``listen``."""
    template = _NGINX if kind is ProxyKind.NGINX else _HAPROXY
    return template.format(
        app=app,
        upstream=colour.service(app),
        colour=colour.value,
        port=port,
        listen=listen,
        header=COLOUR_HEADER,
    )


def _configs(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Configs") or [])


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
    """Rolls the router service (by default one on ``engine`` with its defaults)."""
    probe: Callable[[], Colour | None] | None = field(default=None, compare=False)
    """Asks the router's address which colour answers (``X-Zdd-Colour``)."""

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
        if self._mounted(view.spec) is None:
            raise InputError(
                f"{self.service} mounts no router config of ours at {self.kind.config_path}: "
                f"a Swarm config labelled {LABEL_ROUTER_COLOUR}=blue|green (docs/blue-green.md)"
            )

    def routes(self, label: str) -> bool:
        return False

    def active(self) -> Colour | None:
        return self._mounted(self.engine.inspect_service(self.service).spec)

    def switch(self, to: Colour) -> None:
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

    def switched(self, to: Colour) -> bool:
        view = self.engine.inspect_service(self.service)
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
        return bool(tasks) and (self.probe is None or self.probe() == to)

    # -- configs ------------------------------------------------------------------

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
