"""The lease of a blue-green operation: how another process tells that the
process holding a pair's lock is gone.

The lock (the label ``zdd-swarm.bluegreen.lock`` on a colour service) says
who holds the pair, not whether that process still runs. While it runs, the
holder renews a lease every ``RENEW_EVERY``: a Swarm config named after the
lock's owner, whose labels say when it was last renewed. A lease not renewed
for ``LEASE_TTL`` belongs to a process that is gone, and ``bluegreen watch``
takes its operation over (``watch.py``).

A config and not a label of the colour services: the rollout of the idle
colour updates its service at the version it inspected, and a label written
in between would stop that update as a concurrent change. A config's labels
change on their own and restart nothing (swarmkit
``manager/controlapi/config.go``, UpdateConfig: "We only
allow updating Labels").

The timestamps are the holder's clock, read by the watcher's: the two may
differ by less than ``LEASE_TTL - RENEW_EVERY`` (25 s) without a live
process being taken for a dead one.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from types import TracebackType

from .._logging import get_logger
from ..clock import Clock
from ..engine import StackEngine
from ..errors import ZddError
from ..model import parse_timestamp
from .model import LABEL_APP, LABEL_PREFIX, LEASE_TTL, lock_fields
from .store import Pair, acquire, release

__all__ = ["LEASE_TTL", "RENEW_EVERY", "Lease", "LeaseState", "hold", "lease_state"]

log = get_logger("zdd_swarm.bluegreen")

RENEW_EVERY = timedelta(seconds=5)
"""How often a live holder renews its lease."""

LABEL_LEASE = LABEL_PREFIX + "lease"
"""On a lease config: the owner of the lock it keeps alive."""
LABEL_RENEWED = LABEL_PREFIX + "lease.renewed"
"""On a lease config: when its holder last renewed it (ISO 8601)."""


class LeaseState(enum.StrEnum):
    LIVE = "live"
    """Renewed within ``LEASE_TTL``: the holder runs."""
    EXPIRED = "expired"
    """Not renewed for ``LEASE_TTL``: the holder is gone."""
    NONE = "none"
    """No lease (a holder of an older version, or one that died as it started):
    only a person can say; the lock is removed by hand."""


def owner_of(lock: str) -> str:
    """The owner field of a lock (``<owner> <since> <operation>``)."""
    return lock_fields(lock)[0]


def _name(owner: str) -> str:
    return f"zdd-swarm-lease-{owner}"


def lease_state(
    engine: StackEngine, lock: str, now: datetime
) -> tuple[LeaseState, datetime | None]:
    """The state of the lease that keeps ``lock`` alive, and when it was last renewed."""
    found = engine.list_objects("config", {LABEL_LEASE: owner_of(lock)})
    times = [parse_timestamp(o.labels.get(LABEL_RENEWED)) for o in found]
    renewed = max((t for t in times if t is not None), default=None)
    if renewed is None:
        return LeaseState.NONE, None
    if now - renewed >= LEASE_TTL:
        return LeaseState.EXPIRED, renewed
    return LeaseState.LIVE, renewed


class Lease:
    """The lease of ``owner`` on ``app``, renewed on a background thread from
    ``__enter__`` to ``__exit__`` (which removes it). A renewal that fails is
    logged and tried again at the next turn; it never stops the operation."""

    def __init__(
        self,
        engine: StackEngine,
        app: str,
        owner: str,
        clock: Clock,
        every: timedelta = RENEW_EVERY,
    ) -> None:
        self.engine = engine
        self.app = app
        self.owner = owner
        self.clock = clock
        self.every = every
        self._id: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{owner}", daemon=True)

    def _labels(self) -> dict[str, str]:
        return {
            LABEL_APP: self.app,
            LABEL_LEASE: self.owner,
            LABEL_RENEWED: self.clock.now().isoformat(),
        }

    def __enter__(self) -> Lease:
        spec = {"Name": _name(self.owner), "Labels": self._labels(), "Data": self.owner.encode()}
        self._id = self.engine.create_object("config", spec)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every.total_seconds() + 5)
        if self._id is not None:
            try:
                self.engine.remove_object("config", self._id)
            except ZddError as error:
                log.warning(
                    "lease_not_removed", app=self.app, lease=_name(self.owner), error=str(error)
                )

    def _renew(self) -> None:
        assert self._id is not None
        while not self._stop.wait(self.every.total_seconds()):
            try:
                self.engine.relabel_config(self._id, self._labels())
            except ZddError as error:
                log.warning(
                    "lease_not_renewed", app=self.app, lease=_name(self.owner), error=str(error)
                )


@contextlib.contextmanager
def hold(
    engine: StackEngine, pair: Pair, operation: str, clock: Clock, replaces: str | None = None
) -> Iterator[tuple[Pair, str]]:
    """``pair`` under a lock of our own for ``operation``, kept alive by a lease
    from before the lock is taken until after it is given back (whatever
    happens); ``replaces``: the lock of a process that is gone, taken over.
    ``UpdateInProgress`` when another process holds the pair."""
    held = f"{uuid.uuid4().hex[:12]} {clock.now().isoformat()} {operation}"
    with Lease(engine, pair.app, owner_of(held), clock):
        pair = acquire(engine, pair, held, replaces)
        try:
            yield pair, held
        finally:
            with contextlib.suppress(ZddError):
                release(engine, pair.app, held)


def remove_lease(engine: StackEngine, lock: str) -> None:
    """Remove the lease of ``lock`` (of a process that is gone, taken over)."""
    for found in engine.list_objects("config", {LABEL_LEASE: owner_of(lock)}):
        with contextlib.suppress(ZddError):
            engine.remove_object("config", found.id)
