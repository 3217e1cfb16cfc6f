"""Blue-green releases: the new version beside the old, checked on its
preview route, then the traffic switched by the router, with the old colour
kept up for an instant way back.

``BlueGreen`` runs the flow (``flow.py``, a state machine) over a pair of
Swarm services ``<app>-blue`` / ``<app>-green`` whose state is kept in their
labels (``model.py``, ``store.py``), through a ``Router`` (``router.py``;
nginx and HAProxy in ``proxy.py``, HAProxy's runtime API in ``haproxy.py``;
kept with the pair, ``routing.py``),
whose public address may be probed (``probe.py``); ``follow`` watches an
operation from another process (``watch.py``).
See docs/blue-green.md.
"""

from __future__ import annotations

from ..events import BlueGreenStage
from .flow import BlueGreen, BlueGreenOptions, Stage
from .model import (
    BlueGreenCode,
    BlueGreenOutcome,
    BlueGreenResult,
    Colour,
    PairState,
    RouterSpec,
)
from .probe import RouterProbe
from .proxy import ProxyKind, ProxyRouter
from .router import CallableRouter, LabelRouter, Router
from .store import Pair
from .watch import follow

__all__ = [
    "BlueGreen",
    "BlueGreenCode",
    "BlueGreenOptions",
    "BlueGreenOutcome",
    "BlueGreenResult",
    "BlueGreenStage",
    "CallableRouter",
    "Colour",
    "LabelRouter",
    "Pair",
    "PairState",
    "ProxyKind",
    "ProxyRouter",
    "Router",
    "RouterProbe",
    "RouterSpec",
    "Stage",
    "follow",
]
