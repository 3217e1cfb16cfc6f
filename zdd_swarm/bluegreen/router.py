"""Routers: what sends traffic to one colour, and switches it to the other.

One small adapter each. ``LabelRouter`` serves routers that read service
labels (Traefik, caddy-docker-proxy); ``CallableRouter`` wraps platform
code. nginx and HAProxy are in ``proxy.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..engine import Engine
from ..errors import ConfigError, InputError, ServiceNotFound
from .model import LABEL_PREFIX, Colour
from .store import relabel

__all__ = ["CallableRouter", "LabelRouter", "Router"]


@runtime_checkable
class Router(Protocol):
    """Sends the traffic of one app to one of its colours."""

    def check(self) -> None:
        """Raise ``InputError`` if the router cannot be used (before anything changes)."""
        ...

    def active(self) -> Colour | None:
        """The colour that gets the traffic now (None: neither, or not one)."""
        ...

    def switch(self, to: Colour) -> None:
        """Send the traffic to ``to``."""
        ...

    def switched(self, to: Colour) -> bool:
        """Whether the switch to ``to`` took effect."""
        ...

    def routes(self, label: str) -> bool:
        """Whether a service label is the router's (moved by a switch, never copied)."""
        ...


@dataclass(frozen=True)
class CallableRouter:
    """A router of platform code: ``switch(colour)``, ``active()`` and, if
    given, ``switched(colour)`` (by default: ``active() == colour``)."""

    switch_to: Callable[[Colour], None]
    active_colour: Callable[[], Colour | None]
    verify: Callable[[Colour], bool] | None = None

    def check(self) -> None:
        for name in ("switch_to", "active_colour"):
            if not callable(getattr(self, name)):
                raise ConfigError(f"router.{name}", getattr(self, name), "a callable")

    def active(self) -> Colour | None:
        return self.active_colour()

    def switch(self, to: Colour) -> None:
        self.switch_to(to)

    def switched(self, to: Colour) -> bool:
        if self.verify is not None:
            return self.verify(to)
        return self.active() == to

    def routes(self, label: str) -> bool:
        return False


def _under(label: str, prefix: str) -> bool:
    prefix = prefix.rstrip(".")
    return label == prefix or label.startswith(prefix + ".")


@dataclass(frozen=True)
class LabelRouter:
    """A router that reads service labels (Traefik, caddy-docker-proxy).

    The labels under ``prefixes`` (``traefik.http.routers.web`` covers
    ``traefik.http.routers.web.rule`` and every other key below it) route
    traffic to the colour that carries them. A switch copies them to the
    other colour's service, then removes them from the first: for a moment
    both colours are served, never neither. Swarm applies a label change
    without restarting any task. ``router_service``, if given, must exist
    (checked before anything changes). ``probe``, if given, asks the
    router's public address which colour answers; the switch counts only
    once it names the new colour.
    """

    engine: Engine
    app: str
    prefixes: Sequence[str]
    router_service: str | None = None
    probe: Callable[[], Colour | None] | None = field(default=None, compare=False)

    def check(self) -> None:
        if isinstance(self.prefixes, str) or not self.prefixes:
            raise ConfigError("router.prefixes", self.prefixes, "one or more label prefixes")
        for prefix in self.prefixes:
            if not prefix.strip(".") or _under(prefix, LABEL_PREFIX):
                raise ConfigError("router.prefixes", prefix, "a label prefix not of zdd_swarm's")
        if self.router_service:
            try:
                self.engine.inspect_service(self.router_service)
            except ServiceNotFound:
                raise InputError(
                    f"router service {self.router_service!r} not found: the router runs as a "
                    "Swarm service of your stack"
                ) from None

    def routes(self, label: str) -> bool:
        return any(_under(label, p) for p in self.prefixes)

    def _labels(self, colour: Colour) -> dict[str, str]:
        try:
            view = self.engine.inspect_service(colour.service(self.app))
        except ServiceNotFound:
            return {}  # not created yet
        return {k: v for k, v in (view.spec.get("Labels") or {}).items() if self.routes(k)}

    def active(self) -> Colour | None:
        carrying = [c for c in Colour if self._labels(c)]
        return carrying[0] if len(carrying) == 1 else None

    def switch(self, to: Colour) -> None:
        moving = self._labels(to.other)
        if moving:
            relabel(self.engine, to.service(self.app), moving)
        relabel(self.engine, to.other.service(self.app), dict.fromkeys(moving, ""))

    def switched(self, to: Colour) -> bool:
        if not self._labels(to) or self._labels(to.other):
            return False
        return self.probe is None or self.probe() == to
