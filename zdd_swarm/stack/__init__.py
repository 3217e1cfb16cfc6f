"""Whole stacks: a compose file deployed in waves, to one verdict.

``deploy_stack`` converts the compose files (``compose.load_stack``, a named
subset of the format, as the docker CLI converts it), rolls the services
that changed wave by wave with the controller, and puts everything back when
one fails. See docs/stacks.md.
"""

from __future__ import annotations

from .compose import (
    LABEL_IMAGE,
    LABEL_NAMESPACE,
    ComposeError,
    ObjectSpec,
    StackSpec,
    UnsupportedKey,
    interpolate,
    load_stack,
)
from .deploy import (
    ResolveImage,
    ServiceAction,
    ServiceReport,
    StackOutcome,
    StackPlan,
    StackResult,
    deploy_stack,
    plan_stack,
    watch_stack,
)

__all__ = [
    "LABEL_IMAGE",
    "LABEL_NAMESPACE",
    "ComposeError",
    "ObjectSpec",
    "ResolveImage",
    "ServiceAction",
    "ServiceReport",
    "StackOutcome",
    "StackPlan",
    "StackResult",
    "StackSpec",
    "UnsupportedKey",
    "deploy_stack",
    "interpolate",
    "load_stack",
    "plan_stack",
    "watch_stack",
]
