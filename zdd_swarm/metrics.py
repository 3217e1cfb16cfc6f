"""Prometheus metrics of rollouts: a hook fed by the controller's events.

Needs the ``metrics`` extra (``pip install zdd_swarm[metrics]``, which brings
``prometheus_client``). A platform registers the hook's series in its own
registry and serves them as it serves the rest::

    registry = CollectorRegistry()
    controller = Controller(engine, hooks=[PrometheusHook(registry)])

Series (``zdd_swarm_`` prefix), named as Prometheus' conventions say: base
units in the names, ``_total`` counters, label values from bounded sets
(``outcome``, ``code``, ``phase``, ``by`` and ``cause`` are fixed sets; a
value outside them is counted as ``other``):

==============================================  =========  ==========================
series                                          type       labels
==============================================  =========  ==========================
``rollouts_total``                              counter    service, outcome, code
``rollout_duration_seconds``                    histogram  service, outcome
``batches_total``                               counter    service, phase
``task_failures_total``                         counter    service, phase, cause
``rollbacks_total``                             counter    service, by, code
``verdict_latency_seconds``                     histogram  service
``rollout_phase``                               gauge      service, phase
``rollout_batch``                               gauge      service
``rollout_progress_ratio``                      gauge      service
``canary_step``                                 gauge      service
``canary_steps``                                gauge      service
``engine_unreachable_total``                    counter    service
``gate_failures_total``                         counter    service
``rollout_last_finished_timestamp_seconds``     gauge      service, outcome
==============================================  =========  ==========================

The CLI writes the same series to a node_exporter textfile
(``write_textfile``) or pushes them to a Pushgateway (``push``).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest, push_to_gateway

from . import events
from ._logging import get_logger
from .errors import ConfigError
from .redact import mask_secrets, mask_url
from .result import Outcome

__all__ = [
    "BYS",
    "CAUSES",
    "DURATION_BUCKETS",
    "PHASES",
    "REASON_CODES",
    "VERDICT_BUCKETS",
    "PrometheusHook",
    "check_textfile",
    "push",
    "write_textfile",
]

log = get_logger("zdd_swarm.metrics")

REASON_CODES = frozenset(
    {
        "update_completed",
        "no_change",
        "spec_updated",
        "no_update_in_progress",
        "nothing_to_replace",
        "already_completed",
        "already_rolled_back",
        "task_failed",
        "task_deadline",
        "node_down",
        "progress_deadline",
        "timeout",
        "incomplete",
        "gate_failed",
        "engine_paused",
        "engine_rolled_back",
        "rolled_back_by_other",
        "superseded",
        "service_removed",
        "rollback_paused",
        "rollback_deadline",
        "rollback_task_failed",
        "rollback_completed",
        "manual_rollback",
        "analysis_failed",
        "canary_aborted",
    }
)
"""Every reason code a rollout or a rollback can carry (the ``code`` label);
others are counted as ``other``."""
PHASES = ("update", "rollback")
"""Values of the ``phase`` label: what the engine is doing (``watch`` attaches to one of them)."""
BYS = frozenset({"zdd_swarm", "engine", "other"})
"""Who started a rollback (the ``by`` label)."""
CAUSES = frozenset({"failed", "task_deadline", "node_down"})
"""Why a task counts as failed (the ``cause`` label)."""
DURATION_BUCKETS = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
VERDICT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
_OUTCOMES = frozenset(o.value for o in Outcome)
# codes of a threshold crossed because tasks failed: their verdict latency is measured
_TASK_CODES = frozenset({"task_failed", "task_deadline", "node_down"})


def _bounded(value: str, allowed: Iterable[str]) -> str:
    return value if value in allowed else "other"


@dataclass
class _InFlight:
    """What the hook remembers of one service's rollout in flight."""

    rollback_code: str | None = None
    first_failure: float | None = None
    verdict_seen: bool = False
    phases_seen: set[str] = field(default_factory=set)


class PrometheusHook:
    """A hook that keeps Prometheus series of the rollouts it sees.

    ``registry`` is where its series are registered: pass your platform's
    own ``CollectorRegistry``; ``None`` means ``prometheus_client``'s default
    registry (the one ``start_http_server`` serves). One hook per registry:
    the series' names are fixed, so a second hook on the same registry is
    refused (``ValueError``). One hook may watch many services at once,
    from several threads.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        duration_buckets: Iterable[float] = DURATION_BUCKETS,
        verdict_buckets: Iterable[float] = VERDICT_BUCKETS,
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        ns, reg = "zdd_swarm", self.registry
        self.rollouts = Counter(
            "rollouts",
            "Rollouts that ended, by outcome and reason code.",
            ["service", "outcome", "code"],
            namespace=ns,
            registry=reg,
        )
        self.duration = Histogram(
            "rollout_duration_seconds",
            "Time from the start of a rollout to its outcome.",
            ["service", "outcome"],
            namespace=ns,
            registry=reg,
            buckets=tuple(duration_buckets),
        )
        self.batches = Counter(
            "batches",
            "Batches started, by phase (update or rollback).",
            ["service", "phase"],
            namespace=ns,
            registry=reg,
        )
        self.task_failures = Counter(
            "task_failures",
            "New tasks counted as failed, by phase and cause.",
            ["service", "phase", "cause"],
            namespace=ns,
            registry=reg,
        )
        self.rollbacks = Counter(
            "rollbacks",
            "Rollbacks started, by who started them and the reason code.",
            ["service", "by", "code"],
            namespace=ns,
            registry=reg,
        )
        self.verdict_latency = Histogram(
            "verdict_latency_seconds",
            "Time from the first failed task of a rollout to the verdict on it "
            "(the rollback request, or the threshold crossed when the action is not rollback).",
            ["service"],
            namespace=ns,
            registry=reg,
            buckets=tuple(verdict_buckets),
        )
        self.phase = Gauge(
            "rollout_phase",
            "1 for the phase a rollout in flight is in, 0 otherwise (0 for both once it ended).",
            ["service", "phase"],
            namespace=ns,
            registry=reg,
        )
        self.batch = Gauge(
            "rollout_batch",
            "The batch (1-based) of the current phase a rollout in flight is at; 0 when none.",
            ["service"],
            namespace=ns,
            registry=reg,
        )
        self.progress = Gauge(
            "rollout_progress_ratio",
            "Share of the current phase's tasks running the phase's spec; 0 when none.",
            ["service"],
            namespace=ns,
            registry=reg,
        )
        self.canary_step = Gauge(
            "canary_step",
            "The step (1-based) a canary in flight is at; 0 when none.",
            ["service"],
            namespace=ns,
            registry=reg,
        )
        self.canary_steps = Gauge(
            "canary_steps",
            "The number of steps of a canary in flight; 0 when none.",
            ["service"],
            namespace=ns,
            registry=reg,
        )
        self.engine_unreachable = Counter(
            "engine_unreachable",
            "Observations that found the engine unreachable during a rollout.",
            ["service"],
            namespace=ns,
            registry=reg,
        )
        self.gate_failures = Counter(
            "gate_failures",
            "Gates that failed a batch.",
            ["service"],
            namespace=ns,
            registry=reg,
        )
        self.last_finished = Gauge(
            "rollout_last_finished_timestamp_seconds",
            "When the last rollout of the service ended (Unix time), by outcome.",
            ["service", "outcome"],
            namespace=ns,
            registry=reg,
        )
        self._lock = threading.Lock()
        self._flight: dict[str, _InFlight] = {}

    def __call__(self, event: events.Event) -> None:
        with self._lock:
            self._handle(event)

    def _set_phase(self, service: str, phase: str) -> None:
        for name in PHASES:
            self.phase.labels(service, name).set(1 if name == phase else 0)

    def _handle(self, event: events.Event) -> None:
        service = event.service
        flight = self._flight.setdefault(service, _InFlight())
        if isinstance(event, events.RolloutStarted):
            flight = self._flight[service] = _InFlight()
            phase = "rollback" if event.phase == "rollback" else "update"
            if event.phase == "rollback":
                flight.rollback_code = "manual_rollback"
                self.rollbacks.labels(service, "zdd_swarm", "manual_rollback").inc()
            self._set_phase(service, phase)
            self.batch.labels(service).set(0)
            self.progress.labels(service).set(0)
        elif isinstance(event, events.BatchStarted):
            phase = _bounded(event.phase, PHASES)
            self.batches.labels(service, phase).inc()
            if phase in PHASES:
                self._set_phase(service, phase)
            self.batch.labels(service).set(event.batch + 1)
        elif isinstance(event, events.TaskFailed):
            phase = _bounded(event.phase, PHASES)
            self.task_failures.labels(service, phase, _bounded(event.cause, CAUSES)).inc()
            if phase == "update" and flight.first_failure is None:
                flight.first_failure = event.elapsed
        elif isinstance(event, events.GateFailed):
            self.gate_failures.labels(service).inc()
        elif isinstance(event, events.CanaryStep):
            self.canary_step.labels(service).set(event.index + 1)
            self.canary_steps.labels(service).set(event.total)
        elif isinstance(event, events.EngineUnreachable):
            self.engine_unreachable.labels(service).inc()
        elif isinstance(event, events.Progress):
            if event.phase in PHASES:
                self._set_phase(service, event.phase)
            if event.total:
                self.progress.labels(service).set(min(1.0, event.running / event.total))
        elif isinstance(event, events.ThresholdCrossed):
            flight.rollback_code = _bounded(event.code, REASON_CODES)
            if event.action != "rollback":
                self._verdict(flight, service, event.code, event.elapsed)
        elif isinstance(event, events.RollbackStarted):
            by = _bounded(event.by, BYS)
            if by == "engine":
                code = "engine_rolled_back"
            elif by == "other":
                code = "rolled_back_by_other"
            else:
                code = flight.rollback_code or "other"
            self.rollbacks.labels(service, by, code).inc()
            if by == "zdd_swarm":
                self._verdict(flight, service, code, event.elapsed)
            self._set_phase(service, "rollback")
            self.batch.labels(service).set(0)
            self.progress.labels(service).set(0)
        elif isinstance(event, events.RolloutFinished):
            outcome = _bounded(event.outcome, _OUTCOMES)
            code = _bounded(event.code, REASON_CODES)
            self.rollouts.labels(service, outcome, code).inc()
            self.duration.labels(service, outcome).observe(event.elapsed)
            if event.result is not None:
                ended = event.result.started_at.timestamp() + event.result.duration_s
                self.last_finished.labels(service, outcome).set(ended)
            self._set_phase(service, "")
            for gauge in (self.batch, self.progress, self.canary_step, self.canary_steps):
                gauge.labels(service).set(0)
            self._flight.pop(service, None)

    def _verdict(self, flight: _InFlight, service: str, code: str, at: float) -> None:
        if flight.verdict_seen or flight.first_failure is None or code not in _TASK_CODES:
            return
        flight.verdict_seen = True
        self.verdict_latency.labels(service).observe(max(0.0, at - flight.first_failure))


# -- the CLI's outputs ---------------------------------------------------------


def check_textfile(path: str | os.PathLike[str]) -> Path:
    """Refuse (``ConfigError``) a textfile path that cannot be written, before
    anything is sent: its folder must exist and take a new file."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError("--metrics-textfile", str(path), "a file path, not a folder")
    folder = target.parent
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{target.name}.", delete=True):
            pass
    except OSError as exc:
        raise ConfigError(
            "--metrics-textfile",
            str(path),
            f"a path in a writable folder ({exc.strerror or exc})",
        ) from exc
    if target.exists() and not os.access(target, os.W_OK):
        raise ConfigError("--metrics-textfile", str(path), "a writable file")
    return target


def write_textfile(path: str | os.PathLike[str], registry: CollectorRegistry) -> None:
    """Write ``registry`` in the text format for node_exporter's textfile
    collector, atomically: a temporary file in the same folder, renamed over
    ``path``, so the collector never reads half a file."""
    target = Path(path)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(generate_latest(registry))
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def push(
    gateway: str,
    registry: CollectorRegistry,
    *,
    job: str = "zdd_swarm",
    grouping_key: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> str | None:
    """Push ``registry`` to a Pushgateway (replacing the group's series).

    Never raises: a gateway that cannot be reached or refuses the push is a
    warning (logged once, and returned) and does not change the rollout.
    """
    try:
        push_to_gateway(
            gateway,
            job=job,
            registry=registry,
            grouping_key=dict(grouping_key or {}),
            timeout=timeout,
        )
    except Exception as exc:
        warning = f"metrics not pushed to {mask_url(gateway)}: {mask_secrets(str(exc))}"
        log.warning(
            "pushgateway_unreachable", gateway=mask_url(gateway), error=mask_secrets(str(exc))
        )
        return warning
    return None
