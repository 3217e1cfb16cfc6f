"""Progressive delivery for one Swarm service: canary steps and analysis.

``steps`` is the step model (``SetWeight``, ``Pause``, ``Analysis``) and its
parsers; ``analysis`` judges metrics as a state machine in injected time;
``providers`` measures them on Prometheus or a JSON endpoint;
``conditions`` parses their success and failure conditions; ``spec``
reads a canary (steps and analyses) from a file or a compose service;
``driver`` runs it on a service, holding Swarm's own updater at each step;
``record`` keeps its state with the service, and ``control`` reads it from
any process (status, promote, abort, watch).
"""

from __future__ import annotations

from .analysis import (
    AnalysisResult,
    Metric,
    Phase,
    QueryContext,
    check_metrics,
    run_analysis,
)
from .control import abort_canary, canary_status, follow_canary, promote_canary, watch_canary
from .driver import Canary, CanaryOutcome, CanaryResult
from .providers import GateProvider, PrometheusProvider, WebProvider
from .record import CanaryPhase, CanaryRecord
from .spec import CanarySpec, canary_from_compose, load_canary_file
from .steps import Analysis, Pause, SetWeight, Step, parse_steps, steps_from_data, tasks_for_share

__all__ = [
    "Analysis",
    "AnalysisResult",
    "Canary",
    "CanaryOutcome",
    "CanaryPhase",
    "CanaryRecord",
    "CanaryResult",
    "CanarySpec",
    "GateProvider",
    "Metric",
    "Pause",
    "Phase",
    "PrometheusProvider",
    "QueryContext",
    "SetWeight",
    "Step",
    "WebProvider",
    "abort_canary",
    "canary_from_compose",
    "canary_status",
    "check_metrics",
    "follow_canary",
    "load_canary_file",
    "parse_steps",
    "promote_canary",
    "run_analysis",
    "steps_from_data",
    "tasks_for_share",
    "watch_canary",
]
