"""The router as ``--router`` names it: parsed into a ``Router``, said back
from one, and checked against the router the pair remembers (``RouterSpec``
in the pair's labels, written at each deploy)."""

from __future__ import annotations

from typing import Any

from ..controller import Controller
from ..errors import ConfigError
from .model import RouterSpec
from .proxy import ProxyKind, ProxyRouter
from .router import LabelRouter, Router
from .store import Pair

__all__ = ["check_remembered", "describe", "parse_router", "spec_of"]

#: Router kinds of ``--router``.
ROUTER_KINDS = ("labels", *ProxyKind)
_ROUTER_FORMS = "labels:PREFIX[,PREFIX...], nginx:SERVICE or haproxy:SERVICE"


def parse_router(
    spec: str,
    app: str,
    engine: Any,
    router_service: str | None,
    controller: Controller | None = None,
) -> Router:
    """``labels:PREFIX[,PREFIX...]``: a router that reads service labels;
    ``nginx:SERVICE`` / ``haproxy:SERVICE``: a router service whose config
    names the active colour."""
    kind, sep, rest = spec.partition(":")
    if kind not in ROUTER_KINDS or not sep or not rest.strip(","):
        raise ConfigError("--router", spec, _ROUTER_FORMS)
    if kind != "labels":
        if "," in rest or (router_service and router_service != rest):
            raise ConfigError("--router", spec, f"{kind}:SERVICE, one router service")
        return ProxyRouter(engine, app, rest, ProxyKind(kind), controller=controller)
    prefixes = [p for p in rest.split(",") if p]
    return LabelRouter(engine, app, prefixes, router_service=router_service)


def describe(router: Router) -> str | None:
    """``router`` as ``--router`` names it (None: a router of platform code)."""
    if isinstance(router, LabelRouter):
        return "labels:" + ",".join(router.prefixes)
    if isinstance(router, ProxyRouter):
        return f"{router.kind.value}:{router.service}"
    return None


def spec_of(router: Router, url: str | None, answer: str) -> RouterSpec | None:
    """What a deploy through ``router`` remembers (None: a router of platform code)."""
    said = describe(router)
    if said is None:
        return None
    service = router.router_service if isinstance(router, LabelRouter) else None
    return RouterSpec(said, service, url, answer if url and answer != "body" else None)


def check_remembered(pair: Pair, router: Router, field: str = "router") -> RouterSpec | None:
    """The router ``pair`` remembers; ``ConfigError`` naming ``field`` when
    ``router`` is another one (nothing changed)."""
    remembered = pair.router
    said = describe(router)
    if remembered is not None and said is not None and said != remembered.router:
        raise ConfigError(
            field,
            said,
            f"{pair.app} was deployed with the router {remembered.router}: give that one, "
            "or none, or deploy with the new router",
        )
    return remembered
