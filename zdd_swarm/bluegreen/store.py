"""The pair as the engine holds it: its two services, read and validated,
and label writes (the state, the router's labels) that restart no task."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from .._logging import get_logger
from ..config import format_duration, parse_duration
from ..engine import Engine, StackEngine
from ..errors import (
    ConfigError,
    InputError,
    ServiceNotFound,
    UnsupportedServiceMode,
    UpdateInProgress,
    VersionConflict,
    ZddError,
)
from ..model import ServiceMode, ServiceView, UpdateState
from .model import (
    LABEL_APP,
    LABEL_COLOUR,
    LABEL_LAST,
    LABEL_LOCK,
    LABEL_PREFIX,
    LABEL_ROUTER,
    LABEL_SCALE_DOWN_DELAY,
    LEASE_TTL,
    OTHER_STRATEGIES,
    BlueGreenResult,
    Colour,
    PairState,
    RouterSpec,
    lock_fields,
    with_labels,
)

log = get_logger("zdd_swarm.bluegreen")

__all__ = [
    "Pair",
    "acquire",
    "read_pair",
    "record",
    "relabel",
    "release",
    "remember",
    "set_replicas",
    "write_state",
]


@dataclass(frozen=True)
class Pair:
    """The two colour services of one app (``None``: not created yet) and their state."""

    app: str
    services: Mapping[Colour, ServiceView | None]
    state: PairState

    @property
    def lock(self) -> str | None:
        """Who holds the pair's lock (``<owner> <since> <operation>``), if anyone."""
        for view in self.services.values():
            held = (view.spec.get("Labels") or {}).get(LABEL_LOCK) if view else None
            if held:
                return str(held)
        return None

    def _kept(self, label: str) -> str | None:
        """A label of the last deploy (the active colour's copy first)."""
        for colour in (self.state.active, self.state.active.other):
            view = self.services[colour]
            value = (view.spec.get("Labels") or {}).get(label) if view else None
            if value:
                return str(value)
        return None

    @property
    def router(self) -> RouterSpec | None:
        """The router the pair was last deployed with."""
        return RouterSpec.from_label(self._kept(LABEL_ROUTER))

    @property
    def scale_down_delay(self) -> timedelta | None:
        """The scale-down delay the pair was last deployed with."""
        try:
            return parse_duration(self._kept(LABEL_SCALE_DOWN_DELAY) or "", LABEL_SCALE_DOWN_DELAY)
        except ConfigError:
            return None

    @property
    def active(self) -> ServiceView:
        service = self.services[self.state.active]
        assert service is not None
        return service

    def service(self, colour: Colour) -> ServiceView | None:
        return self.services[colour]


def relabel(engine: Engine, service: str, changes: Mapping[str, str]) -> ServiceView:
    """Apply ``changes`` to the labels of ``service`` (an empty value removes
    a label), at the version just inspected; retried when another write came
    in between. Only ``Spec.Labels`` changes: no task is restarted."""
    for _ in range(5):
        view = engine.inspect_service(service)
        labels = with_labels(view.spec.get("Labels") or {}, changes)
        if labels == dict(view.spec.get("Labels") or {}):
            return view
        try:
            engine.update_service(view, {**view.spec, "Labels": labels})
        except VersionConflict:
            continue
        return engine.inspect_service(service)
    raise VersionConflict(
        f"service {service!r}: labels not written, update out of sequence 5 times"
    )


def set_replicas(
    engine: Engine, service: str, replicas: int, labels: Mapping[str, str] | None = None
) -> None:
    """Scale a colour, adding ``labels`` (the task template is unchanged: no
    task restarts); retried when another write came in between."""
    for _ in range(5):
        view = engine.inspect_service(service)
        spec = dict(view.spec)
        spec["Mode"] = {"Replicated": {"Replicas": replicas}}
        spec["Labels"] = {**(view.spec.get("Labels") or {}), **(labels or {})}
        try:
            engine.update_service(view, spec)
            return
        except VersionConflict:
            continue
    raise VersionConflict(f"service {service!r}: not scaled, update out of sequence 5 times")


def record(engine: Engine, result: BlueGreenResult) -> None:
    """Keep ``result`` with the pair (``last``, on both colours) for ``watch``
    and ``status`` in other processes; a failed write is logged, not raised."""
    for colour in Colour:
        try:
            relabel(engine, colour.service(result.app), {LABEL_LAST: result.to_record()})
        except ServiceNotFound:
            continue
        except ZddError as exc:
            log.warning("result_not_recorded", app=result.app, error=str(exc))


def write_state(engine: Engine, pair: Pair, state: PairState) -> Pair:
    """Write ``state`` to both colour services (the higher ``seq`` wins when read)."""
    services = dict(pair.services)
    for colour, view in pair.services.items():
        if view is not None:
            services[colour] = relabel(engine, view.id, state.labels())
    return Pair(pair.app, services, state)


def remember(
    engine: Engine, pair: Pair, router: RouterSpec | None, scale_down_delay: timedelta
) -> Pair:
    """Keep the router and the scale-down delay of a deploy with the pair (on
    both colours), for ``promote`` and ``rollback`` that give none."""
    labels = {LABEL_SCALE_DOWN_DELAY: format_duration(scale_down_delay)}
    labels[LABEL_ROUTER] = router.to_label() if router else ""
    services = dict(pair.services)
    for colour, view in pair.services.items():
        if view is not None:
            services[colour] = relabel(engine, view.id, labels)
    return Pair(pair.app, services, pair.state)


def _find(engine: StackEngine, name: str) -> ServiceView | None:
    try:
        return engine.inspect_service(name)
    except ServiceNotFound:
        return None


def read_pair(engine: StackEngine, app: str) -> Pair:
    """The pair of ``app``, checked: raises ``InputError`` (nothing changed)
    for a colour service missing or renamed, one managed by another
    strategy, a global service or a job, published ports, or an update in
    progress."""
    services = {colour: _find(engine, colour.service(app)) for colour in Colour}
    names = {colour.service(app) for colour in Colour}
    for labelled in engine.list_services({LABEL_APP: app}):
        if labelled.name not in names:
            raise InputError(
                f"service {labelled.name!r} carries {LABEL_APP}={app} but is not named "
                f"{app}-blue or {app}-green: a colour service was renamed"
            )
    states = []
    for colour, view in services.items():
        if view is None:
            continue
        _check_service(view, colour)
        state = PairState.from_labels(view.spec.get("Labels") or {})
        if state is not None:
            states.append(state)
    present = [c for c, v in services.items() if v is not None]
    if not present:
        raise InputError(
            f"neither {app}-blue nor {app}-green exists: deploy the current service as "
            f"{app}-blue (with the router's labels) first; the other colour is created from it"
        )
    if states:
        state = max(states, key=lambda s: s.seq)
        missing = [c for c in Colour if services[c] is None]
        if missing:
            raise InputError(
                f"colour service {missing[0].service(app)!r} is missing: the pair of {app} "
                f"was set up, and zdd_swarm does not recreate a removed colour"
            )
    elif len(present) == 2:
        raise InputError(
            f"{app}-blue and {app}-green both exist but carry no blue-green state: "
            "remove the one that does not serve traffic, it is created from the other"
        )
    else:
        state = PairState(active=present[0])
    return Pair(app, services, state)


def _check_service(view: ServiceView, colour: Colour) -> None:
    labels = view.spec.get("Labels") or {}
    said = labels.get(LABEL_COLOUR)
    if said is not None and said != colour.value:
        raise InputError(
            f"service {view.name!r} carries {LABEL_COLOUR}={said}: a colour service was renamed"
        )
    other = sorted(k for k in labels if k.startswith(OTHER_STRATEGIES))
    other = [k for k in other if not k.startswith(LABEL_PREFIX)]
    if other:
        raise InputError(
            f"service {view.name!r} is managed by another strategy ({other[0]}); "
            "blue-green does not take it over"
        )
    if view.mode is not ServiceMode.REPLICATED:
        raise UnsupportedServiceMode(
            f"service {view.name!r} is a {view.mode.value} service: blue-green scales a "
            "colour to 0, which only a replicated service can"
        )
    ports = (view.spec.get("EndpointSpec") or {}).get("Ports") or []
    if ports:
        raise InputError(
            f"service {view.name!r} publishes ports: two colours cannot publish the same "
            "port; publish the router's port instead and let it reach the colours"
        )
    if view.state in (UpdateState.UPDATING, UpdateState.ROLLBACK_STARTED):
        raise InputError(f"service {view.name!r}: an update is in progress ({view.state.value})")


def _refuse(app: str, held: str) -> UpdateInProgress:
    if not held:
        return UpdateInProgress(f"{app}: the operation to take over has ended meanwhile")
    owner, since, operation = lock_fields(held)
    return UpdateInProgress(
        f"{app}: another blue-green {operation or 'operation'} holds the pair since {since} "
        f"(owner {owner}); if its process died, `zdd-swarm bluegreen watch {app}` takes it "
        f"over once its lease runs out ({LEASE_TTL.seconds} s; a lock of an older version, "
        f"with no lease: remove the label {LABEL_LOCK} from {app}-blue and {app}-green)"
    )


def acquire(engine: StackEngine, pair: Pair, held: str, replaces: str | None = None) -> Pair:
    """Take the pair's lock (the label ``held`` on its first colour service),
    so that two processes never switch one app; returns the pair as read
    under the lock. The write is checked against the service's version: of
    two processes that race, the second sees the first's lock and raises
    ``UpdateInProgress``. ``replaces``: the lock of a process that is gone,
    taken over (any other lock is refused; its copy elsewhere is removed)."""
    if pair.lock is not None and pair.lock != replaces:
        raise _refuse(pair.app, pair.lock)
    service = next(v for v in pair.services.values() if v is not None)
    for _ in range(5):
        if replaces is not None and (now := read_pair(engine, pair.app).lock) != replaces:
            raise _refuse(pair.app, now or "")  # taken over (or given back) meanwhile
        view = engine.inspect_service(service.id)
        labels = dict(view.spec.get("Labels") or {})
        if labels.get(LABEL_LOCK) and labels[LABEL_LOCK] != replaces:
            raise _refuse(pair.app, labels[LABEL_LOCK])
        try:
            engine.update_service(view, {**view.spec, "Labels": {**labels, LABEL_LOCK: held}})
        except VersionConflict:
            continue
        if replaces is not None:
            release(engine, pair.app, replaces)
        return read_pair(engine, pair.app)
    raise VersionConflict(f"{pair.app}: lock not taken, update out of sequence 5 times")


def release(engine: StackEngine, app: str, held: str) -> None:
    """Give the lock back, if it is still ``held``."""
    for colour in Colour:
        try:
            view = engine.inspect_service(colour.service(app))
        except ServiceNotFound:
            continue
        if (view.spec.get("Labels") or {}).get(LABEL_LOCK) == held:
            relabel(engine, view.id, {LABEL_LOCK: ""})
