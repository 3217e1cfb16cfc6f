"""Progressive delivery for one Swarm service: canary steps and analysis.

``steps`` is the step model (``SetWeight``, ``Pause``, ``Analysis``) and its
parsers; ``analysis`` runs metric checks against Prometheus or a JSON
endpoint as a state machine in simulated or real time.
"""

from __future__ import annotations

from .steps import Analysis, Pause, SetWeight, Step, parse_steps, steps_from_data, tasks_for_share

__all__ = [
    "Analysis",
    "Pause",
    "SetWeight",
    "Step",
    "parse_steps",
    "steps_from_data",
    "tasks_for_share",
]
