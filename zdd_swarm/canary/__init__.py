"""Progressive delivery for one Swarm service: canary steps and analysis.

``steps`` is the step model (``SetWeight``, ``Pause``, ``Analysis``) and its
parsers; ``analysis`` judges metrics as a state machine in injected time;
``providers`` measures them on Prometheus or a JSON endpoint;
``conditions`` parses their success and failure conditions; ``spec``
reads a canary (steps and analyses) from a file or a compose service;
``driver`` runs it on a service, holding Swarm's own updater at each step.
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
from .driver import Canary, CanaryOutcome, CanaryResult
from .providers import PrometheusProvider, WebProvider
from .spec import CanarySpec, canary_from_compose, load_canary_file
from .steps import Analysis, Pause, SetWeight, Step, parse_steps, steps_from_data, tasks_for_share

__all__ = [
    "Analysis",
    "AnalysisResult",
    "Canary",
    "CanaryOutcome",
    "CanaryResult",
    "CanarySpec",
    "Metric",
    "Pause",
    "Phase",
    "PrometheusProvider",
    "QueryContext",
    "SetWeight",
    "Step",
    "WebProvider",
    "canary_from_compose",
    "check_metrics",
    "load_canary_file",
    "parse_steps",
    "run_analysis",
    "steps_from_data",
    "tasks_for_share",
]
