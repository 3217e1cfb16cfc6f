"""zdd_swarm: safe Docker Swarm rolling updates.

Zero downtime, watched batch by batch, rolled back automatically when a
release is bad::

    import zdd_swarm
    result = zdd_swarm.update("web", image="registry:5000/web:2",
                              update_config=zdd_swarm.UpdateConfig(parallelism=2,
                                                                   order="start-first"))
    print(result.outcome, result.reason.message)

The library never configures logging: it logs with structlog through the
stdlib logger ``zdd_swarm`` (silent until the application configures
``logging``; see docs/logging.md) and delivers typed events to the hooks you
pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

from . import events
from .bluegreen import BlueGreenOptions, BlueGreenResult, Router
from .clock import Clock, SystemClock
from .config import FailureAction, LintWarning, Order, RollbackConfig, UpdateConfig
from .controller import ConcurrentChange, Controller, Plan, RolloutOptions, UpdateInProgress
from .engine import DockerEngine, Engine
from .errors import (
    ConfigError,
    DockerConfigError,
    EngineAPIError,
    EngineError,
    EngineUnavailable,
    InputError,
    InvalidImageReference,
    NotAManager,
    ServiceNotFound,
    VersionConflict,
    ZddError,
)
from .events import Event, Hook
from .gates import CallableGate, Gate, HttpGate, TcpGate
from .result import BatchReport, GateReport, Outcome, Reason, RolloutResult, TaskReport
from .spec import ServiceChange
from .stack import StackOutcome, StackResult

if TYPE_CHECKING:
    from .canary import CanaryResult, CanarySpec

__version__ = "0.1.0"

__all__ = [
    "BatchReport",
    "CallableGate",
    "Clock",
    "ConcurrentChange",
    "ConfigError",
    "Controller",
    "DockerConfigError",
    "DockerEngine",
    "Engine",
    "EngineAPIError",
    "EngineError",
    "EngineUnavailable",
    "Event",
    "FailureAction",
    "Gate",
    "GateReport",
    "Hook",
    "HttpGate",
    "InputError",
    "InvalidImageReference",
    "LintWarning",
    "NotAManager",
    "Order",
    "Outcome",
    "Plan",
    "Reason",
    "RollbackConfig",
    "RolloutOptions",
    "RolloutResult",
    "ServiceChange",
    "ServiceNotFound",
    "StackOutcome",
    "StackResult",
    "SystemClock",
    "TaskReport",
    "TcpGate",
    "UpdateConfig",
    "UpdateInProgress",
    "VersionConflict",
    "ZddError",
    "blue_green",
    "deploy_stack",
    "events",
    "rollback",
    "update",
    "watch",
]


def _controller(
    host: str | None,
    hooks: Sequence[Hook],
    options: RolloutOptions | None,
    option_kwargs: Mapping[str, Any],
) -> Controller:
    if options is None:
        options = RolloutOptions(**option_kwargs)
    elif option_kwargs:
        raise ConfigError("options", sorted(option_kwargs), "either options= or keywords")
    return Controller(DockerEngine(host), hooks=hooks, options=options)


@overload
def update(
    service: str,
    *,
    image: str | None = ...,
    host: str | None = ...,
    update_config: UpdateConfig | None = ...,
    rollback_config: RollbackConfig | None = ...,
    change: ServiceChange | None = ...,
    hooks: Sequence[Hook] = ...,
    options: RolloutOptions | None = ...,
    steps: None = ...,
    analyses: None = ...,
    **option_kwargs: Any,
) -> RolloutResult: ...


@overload
def update(
    service: str,
    *,
    image: str | None = ...,
    host: str | None = ...,
    update_config: UpdateConfig | None = ...,
    rollback_config: RollbackConfig | None = ...,
    change: ServiceChange | None = ...,
    hooks: Sequence[Hook] = ...,
    options: None = ...,
    steps: Sequence[Any] | CanarySpec,
    analyses: Mapping[str, Any] | None = ...,
) -> CanaryResult: ...


def update(
    service: str,
    *,
    image: str | None = None,
    host: str | None = None,
    update_config: UpdateConfig | None = None,
    rollback_config: RollbackConfig | None = None,
    change: ServiceChange | None = None,
    hooks: Sequence[Hook] = (),
    options: RolloutOptions | None = None,
    steps: Sequence[Any] | CanarySpec | None = None,
    analyses: Mapping[str, Any] | None = None,
    **option_kwargs: Any,
) -> RolloutResult | CanaryResult:
    """Update ``service`` and follow the rollout to its outcome.

    ``change`` gives full control (env, labels, command, force, patch);
    ``image``/``update_config``/``rollback_config`` are shortcuts for the
    common case. ``option_kwargs`` are ``RolloutOptions`` fields
    (``task_deadline="60s"``, ``gates=[HttpGate(...)]``, ...). ``host``
    defaults to ``DOCKER_HOST``.

    With ``steps`` the update is a canary (docs/progressive-delivery.md):
    steps as in a canary file (``["10%", "analysis=errors", "pause=2m",
    "100%"]`` or Argo's ``{"setWeight": 10}`` forms) and the ``analyses``
    they name, or a ``CanarySpec``; it returns a ``CanaryResult``.
    """
    if change is None:
        change = ServiceChange(
            image=image, update_config=update_config, rollback_config=rollback_config
        )
    elif image or update_config or rollback_config:
        raise ConfigError(
            "change",
            "change plus shortcuts",
            "either change= or image/update_config/rollback_config",
        )
    if steps is not None:
        extra = {"options": options, **option_kwargs}
        refused = sorted(k for k, v in extra.items() if v)
        if refused:  # as `zdd-swarm update --step` refuses them
            raise ConfigError(refused[0], extra[refused[0]], "not with a canary (steps=) yet")
        return _canary(service, change, host, steps, analyses, hooks)
    return _controller(host, hooks, options, option_kwargs).update(service, change)


def _canary(
    service: str,
    change: ServiceChange,
    host: str | None,
    steps: Sequence[Any] | CanarySpec,
    analyses: Mapping[str, Any] | None,
    hooks: Sequence[Hook],
) -> CanaryResult:
    from .canary import Canary, CanarySpec
    from .canary.spec import canary_from_data

    if isinstance(steps, CanarySpec):
        if analyses is not None:
            raise ConfigError("analyses", sorted(analyses), "in the CanarySpec given as steps")
        spec = steps
    else:
        spec = canary_from_data({"steps": list(steps), "analyses": analyses or {}}, "steps")
    return Canary(DockerEngine(host), spec, hooks=hooks).run(service, change)


def watch(
    service: str,
    *,
    host: str | None = None,
    hooks: Sequence[Hook] = (),
    options: RolloutOptions | None = None,
    **option_kwargs: Any,
) -> RolloutResult:
    """Attach to an update in progress and follow it to its outcome."""
    return _controller(host, hooks, options, option_kwargs).watch(service)


def rollback(
    service: str,
    *,
    host: str | None = None,
    hooks: Sequence[Hook] = (),
    options: RolloutOptions | None = None,
    **option_kwargs: Any,
) -> RolloutResult:
    """Roll ``service`` back to its previous spec and watch the rollback."""
    return _controller(host, hooks, options, option_kwargs).rollback(service)


def deploy_stack(
    files: Sequence[str] | str,
    stack: str,
    *,
    host: str | None = None,
    hooks: Sequence[Hook] = (),
    options: RolloutOptions | None = None,
    environment: Mapping[str, str] | None = None,
    resolve_image: str = "never",
    prune: bool = False,
    **option_kwargs: Any,
) -> StackResult:
    """Deploy compose ``files`` as ``stack`` in waves, to one verdict
    (``zdd-swarm stack deploy``; see docs/stacks.md). ``resolve_image``
    (``always``, ``changed``, ``never``) and ``prune`` are those of
    ``docker stack deploy``; ``option_kwargs`` are ``RolloutOptions``
    fields, used for every service."""
    from .stack import deploy_stack as _deploy_stack

    controller = _controller(host, hooks, options, option_kwargs)
    engine: Any = controller.engine
    return _deploy_stack(
        [files] if isinstance(files, str) else files,
        stack,
        engine=engine,
        controller=controller,
        environment=environment,
        resolve_image=resolve_image,
        prune=prune,
    )


def blue_green(
    app: str,
    *,
    image: str,
    router: Router | None = None,
    router_labels: Sequence[str] = (),
    router_service: str | None = None,
    host: str | None = None,
    hooks: Sequence[Hook] = (),
    options: BlueGreenOptions | None = None,
    rollout: RolloutOptions | None = None,
    **option_kwargs: Any,
) -> BlueGreenResult:
    """Release ``image`` to the idle colour of ``app`` (``<app>-blue`` /
    ``<app>-green``), check it, and switch ``router`` to it (``zdd-swarm
    bluegreen deploy``; see docs/blue-green.md). Without ``router``, a
    ``LabelRouter`` moves the labels under ``router_labels``.
    ``option_kwargs`` are ``BlueGreenOptions`` fields (``preview_analysis=``
    takes ``zdd_swarm.canary.Metric``s, or ``load_analysis("file.yml:errors")``
    of ``zdd_swarm.canary.spec``); ``rollout`` watches the idle colour's
    scale-up (task deadlines, gates on its preview route)."""
    from .bluegreen import BlueGreen, LabelRouter

    if options is None:
        options = BlueGreenOptions(**option_kwargs)
    elif option_kwargs:
        raise ConfigError("options", sorted(option_kwargs), "either options= or keywords")
    controller = _controller(host, hooks, rollout, {})
    if router is None:
        router = LabelRouter(controller.engine, app, tuple(router_labels), router_service)
    return BlueGreen(router, controller, options).deploy(app, image)
