"""The engine-truth contract: scenarios run the same way against the lab's
real engine and against ``zdd_swarm.testing.FakeEngine``, each ending in an
``Observed`` that must equal the scenario's expectation on both. The fake is
trusted only where these scenarios say it behaves as the engine does.

A scenario drives the engine only through the ``Engine`` protocol and a
``Harness`` (create a service, let time pass, kill a task), so the same code
runs on both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from zdd_swarm import ServiceChange, UpdateConfig
from zdd_swarm.engine import Engine
from zdd_swarm.model import UpdateState

#: The engine's update states that end an update.
ENDED = frozenset(
    {
        UpdateState.COMPLETED,
        UpdateState.PAUSED,
        UpdateState.ROLLBACK_COMPLETED,
        UpdateState.ROLLBACK_PAUSED,
    }
)


class Harness(Protocol):
    """What a scenario needs besides the ``Engine``: the lab or the fake."""

    engine: Engine

    def image(self, tag: str) -> str: ...

    def create(self, name: str, tag: str, replicas: int, update_config: UpdateConfig) -> None: ...

    def sleep(self, seconds: float) -> None: ...

    def kill_task(self, name: str) -> str:
        """SIGKILL the container of one running task; returns the task ID."""
        ...


@dataclass(frozen=True)
class Observed:
    """What an observer of the engine sees at the end of a scenario."""

    state: UpdateState | None
    message: str
    image: str
    previous_image: str | None
    running_images: tuple[str, ...]
    #: the tasks running before the change still run (none was replaced)
    tasks_kept: bool


@dataclass(frozen=True)
class Scenario:
    name: str
    replicas: int
    change: Callable[[Harness], ServiceChange]
    expected: Callable[[Harness], Observed]
    update_config: UpdateConfig = field(default_factory=lambda: UpdateConfig(monitor="3s"))
    #: ``update`` sends the change; ``rollback`` sends it, waits for its end,
    #: then asks the engine for its rollback; ``kill`` kills a task after it
    rollback_after: bool = False
    kill_after: bool = False
    #: how long to wait for the engine's status to end
    settle: float = 90.0


def _message_kind(message: str) -> str:
    """The stable part of an engine status message (task IDs differ)."""
    for kind in (
        "update paused due to failure",
        "update rolled back due to failure",
        "rollback completed",
        "update completed",
        "manually requested rollback",
    ):
        if message.startswith(kind):
            return kind
    return message


def observe(harness: Harness, name: str, kept: set[str]) -> Observed:
    engine = harness.engine
    service = engine.inspect_service(name)
    tasks = [t for t in engine.list_tasks(service.id) if t.running]
    status = service.update_status
    return Observed(
        state=status.state if status else None,
        message=_message_kind(status.message) if status else "",
        image=service.image,
        previous_image=service.previous_image,
        running_images=tuple(sorted(t.image for t in tasks)),
        tasks_kept=kept <= {t.id for t in tasks},
    )


def wait_ended(harness: Harness, name: str, timeout: float, quiet: float = 12.0) -> None:
    """Until the update status ends, or for ``quiet`` seconds when the
    engine writes none (nothing to replace)."""
    waited = 0.0
    while waited < timeout:
        state = harness.engine.inspect_service(name).state
        if state in ENDED or (state is None and waited >= quiet):
            return
        harness.sleep(0.5)
        waited += 0.5
    raise AssertionError(f"{name}: no end of the update after {timeout}s")


def run(harness: Harness, scenario: Scenario, name: str) -> Observed:
    engine = harness.engine
    harness.create(name, "v1", scenario.replicas, scenario.update_config)
    service = engine.inspect_service(name)
    kept = {t.id for t in engine.list_tasks(service.id) if t.running}
    change = scenario.change(harness)
    engine.update_service(service, change.apply(service.spec))
    wait_ended(harness, name, scenario.settle)
    if scenario.rollback_after:
        engine.update_service(engine.inspect_service(name), {}, rollback=True)
        harness.sleep(1.0)
        wait_ended(harness, name, scenario.settle)
    if scenario.kill_after:
        kept = {t.id for t in engine.list_tasks(service.id) if t.running}
        kept.discard(harness.kill_task(name))
        harness.sleep(8.0)  # restart delay 1 s (lab) / 5 s (fake), then running
    running_settle(harness, name, len(scenario.expected(harness).running_images))
    return observe(harness, name, kept)


def running_settle(harness: Harness, name: str, replicas: int, timeout: float = 60) -> None:
    """Until the service runs the expected number of tasks (a restart or a
    rollback's last task may still be starting)."""
    engine = harness.engine
    waited = 0.0
    while waited < timeout:
        service = engine.inspect_service(name)
        if len([t for t in engine.list_tasks(service.id) if t.running]) == replicas:
            return
        harness.sleep(0.5)
        waited += 0.5


def _image(tag: str) -> Callable[[Harness], ServiceChange]:
    return lambda h: ServiceChange(image=h.image(tag))


def _place(h: Harness) -> ServiceChange:
    def patch(spec: dict[str, Any]) -> None:
        spec["TaskTemplate"].setdefault("Placement", {})["Constraints"] = [
            "node.platform.os==linux"
        ]

    return ServiceChange(patch=patch)


def _observed(**fields: Any) -> Callable[[Harness], Observed]:
    def build(h: Harness) -> Observed:
        values: Mapping[str, Any] = {
            k: (h.image(v[4:]) if isinstance(v, str) and v.startswith("tag:") else v)
            for k, v in fields.items()
        }
        running = values["running_images"]
        return Observed(**{**values, "running_images": tuple(h.image(t) for t in running)})

    return build


SCENARIOS = [
    Scenario(
        "good_rollout",
        3,
        _image("v2"),
        _observed(
            state=UpdateState.COMPLETED,
            message="update completed",
            image="tag:v2",
            previous_image="tag:v1",
            running_images=("v2", "v2", "v2"),
            tasks_kept=False,
        ),
    ),
    Scenario(
        "crash_paused",
        3,
        _image("crash"),
        _observed(
            state=UpdateState.PAUSED,
            message="update paused due to failure",
            image="tag:crash",
            previous_image="tag:v1",
            running_images=("v1", "v1"),
            tasks_kept=False,
        ),
        update_config=UpdateConfig(monitor="3s", failure_action="pause"),
    ),
    Scenario(
        "engine_rollback",
        3,
        _image("crash"),
        _observed(
            state=UpdateState.ROLLBACK_COMPLETED,
            message="rollback completed",
            image="tag:v1",
            previous_image=None,
            running_images=("v1", "v1", "v1"),
            tasks_kept=False,
        ),
        update_config=UpdateConfig(monitor="3s", failure_action="rollback"),
    ),
    Scenario(
        "zero_replicas",
        0,
        _image("v2"),
        _observed(
            state=None,
            message="",
            image="tag:v2",
            previous_image="tag:v1",
            running_images=(),
            tasks_kept=True,
        ),
    ),
    Scenario(
        "placement_only",
        3,
        _place,
        _observed(
            state=None,
            message="",
            image="tag:v1",
            previous_image="tag:v1",
            running_images=("v1", "v1", "v1"),
            tasks_kept=True,
        ),
    ),
    Scenario(
        "manual_rollback",
        2,
        _image("v2"),
        _observed(
            state=UpdateState.ROLLBACK_COMPLETED,
            message="rollback completed",
            image="tag:v1",
            previous_image="tag:v2",
            running_images=("v1", "v1"),
            tasks_kept=False,
        ),
        rollback_after=True,
    ),
    Scenario(
        "restart_after_completion",
        2,
        _image("v2"),
        _observed(
            state=UpdateState.COMPLETED,
            message="update completed",
            image="tag:v2",
            previous_image="tag:v1",
            running_images=("v2", "v2"),
            tasks_kept=True,
        ),
        kill_after=True,
    ),
]
