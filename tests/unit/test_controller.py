"""The controller's decisions, in simulated time against the fake engine."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from zdd_swarm import (
    CallableGate,
    ConcurrentChange,
    Controller,
    FailureAction,
    NotAManager,
    Outcome,
    RollbackConfig,
    RolloutOptions,
    ServiceChange,
    ServiceNotFound,
    UpdateConfig,
    UpdateInProgress,
    events,
)
from zdd_swarm.errors import EngineUnavailable, InvalidImageReference
from zdd_swarm.model import canonical
from zdd_swarm.testing import FakeClock, FakeEngine, ImageBehaviour


def make(engine: FakeEngine, clock: FakeClock, **options: Any) -> tuple[Controller, list[Any]]:
    seen: list[Any] = []
    return Controller(
        engine, clock=clock, hooks=[seen.append], options=RolloutOptions(**options)
    ), seen


def names(seen: list[Any]) -> list[str]:
    return [e.name for e in seen]


@pytest.mark.parametrize("order", ["stop-first", "start-first"])
@pytest.mark.parametrize("parallelism", [1, 2])
def test_good_rollout_completes_in_batches_of_parallelism(
    engine: FakeEngine, clock: FakeClock, order: str, parallelism: int
) -> None:
    engine.add_service(
        "web",
        "app:1",
        replicas=6,
        update_config=UpdateConfig(parallelism=parallelism, order=order, delay="1s"),
    )
    controller, seen = make(engine, clock)
    result = controller.update("web", ServiceChange(image="app:2"))
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.code == "update_completed"
    assert result.image_before == "app:1" and result.image_after == "app:2"
    assert len(result.batches) == 6 // parallelism
    assert all(len(b.tasks) == parallelism for b in result.batches)
    assert all(b.completed_at is not None for b in result.batches)
    assert names(seen).count("task_running") == 6
    assert names(seen)[0] == "rollout_started" and names(seen)[-1] == "rollout_finished"
    assert engine.updates == [(engine._find("web").id, "update", "app:2")]


@pytest.mark.parametrize("order", ["stop-first", "start-first"])
def test_watching_costs_at_most_two_requests_per_second(
    engine: FakeEngine, clock: FakeClock, order: str
) -> None:
    engine.add_service(
        "web",
        "app:1",
        replicas=6,
        update_config=UpdateConfig(parallelism=2, order=order, delay="2s", monitor="5s"),
    )
    engine.behave("app:2", ImageBehaviour(start=3.0))
    watching: list[tuple[int, float]] = []

    def mark(event: Any) -> None:  # the watch begins once the update is sent
        if isinstance(event, events.RolloutStarted):
            watching.append((engine.requests, clock.t))

    controller = Controller(engine, clock=clock, hooks=[mark])
    result = controller.update("web", ServiceChange(image="app:2"))
    assert result.outcome is Outcome.COMPLETED
    assert sum(len(b.tasks) for b in result.batches) == 6
    requests, since = watching[0]
    rate = (engine.requests - requests) / (clock.t - since)
    assert 1.0 < rate <= 1.6, (engine.requests - requests, clock.t - since)


def test_tasks_changing_on_every_poll_cost_one_and_a_half_requests_per_poll(
    engine: FakeEngine, clock: FakeClock
) -> None:
    # one task replaced every second: the task list changes on every poll
    engine.add_service(
        "web", "app:1", replicas=30, update_config=UpdateConfig(parallelism=1, monitor="2s")
    )
    engine.behave("app:2", ImageBehaviour(start=1.0))
    polls: list[tuple[int, float]] = []

    def mark(event: Any) -> None:
        if isinstance(event, events.TaskRunning):
            polls.append((engine.requests, clock.t))

    controller = Controller(engine, clock=clock, hooks=[mark])
    result = controller.update("web", ServiceChange(image="app:2"))
    assert result.outcome is Outcome.COMPLETED
    (first, since), (last, until) = polls[0], polls[-1]
    assert until - since >= 25
    rate = (last - first) / (until - since)  # 1.5, and the node list every 10 s
    assert rate <= 1.65, (last - first, until - since)


def test_service_removed_between_polls_is_superseded(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web", "app:1", replicas=4)
    engine.behave("app:2", ImageBehaviour(start=1.0))

    def remove(event: Any) -> None:
        if isinstance(event, events.TaskRunning):
            engine.services.clear()

    result = Controller(engine, clock=clock, hooks=[remove]).update(
        "web", ServiceChange(image="app:2")
    )
    assert result.outcome is Outcome.SUPERSEDED
    assert result.code == "service_removed"


def test_result_follows_the_engines_completion_within_a_poll(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service(
        "web",
        "app:1",
        replicas=4,
        update_config=UpdateConfig(parallelism=2, delay="1s", monitor="5s"),
    )
    engine.behave("app:2", ImageBehaviour(start=4.5))
    controller, _seen = make(engine, clock)
    result = controller.update("web", ServiceChange(image="app:2"))
    assert result.outcome is Outcome.COMPLETED
    completed_at = engine.inspect_service("web").update_status.completed_at
    assert completed_at is not None
    assert (clock.now() - completed_at).total_seconds() <= 1.0


def test_retrying_a_release_that_failed_before_ignores_its_old_tasks(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1", replicas=3)
    engine.behave("app:2", ImageBehaviour(fail_after=1.0))
    controller, _ = make(engine, clock)
    assert controller.update("web", ServiceChange(image="app:2")).outcome is Outcome.ROLLED_BACK
    # the cause is fixed elsewhere (a secret, a dependency); the same release again
    engine.behave("app:2", ImageBehaviour(start=2.0))
    result = controller.update("web", ServiceChange(image="app:2"))
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.failures == 0


def test_crashing_image_is_rolled_back_and_reported_as_such(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1", replicas=4)
    engine.behave("app:crash", ImageBehaviour(fail_after=1.0))
    controller, seen = make(engine, clock)
    before = engine.inspect_service("web").spec
    result = controller.update("web", ServiceChange(image="app:crash"))
    assert result.outcome is Outcome.ROLLED_BACK
    assert result.exit_code == 1
    assert result.code == "task_failed"
    assert result.rollback_by == "zdd_swarm"
    assert result.image_after == "app:1"
    assert canonical(engine.inspect_service("web").spec) == canonical(before)
    assert "threshold_crossed" in names(seen) and "rollback_started" in names(seen)
    assert [kind for _, kind, _ in engine.updates] == ["update", "rollback"]


def test_rollback_at_a_version_that_moved_is_sent_again_at_once(
    engine: FakeEngine, clock: FakeClock
) -> None:
    # the rollback goes at the version last inspected; the engine refuses it
    # if the service moved since, and one inspection later it is sent again
    engine.add_service("web", "app:1", replicas=4)
    engine.behave("app:crash", ImageBehaviour(fail_after=1.0))

    def touch(event: Any) -> None:
        if isinstance(event, events.ThresholdCrossed):
            engine.change_spec("web", lambda spec: None)

    seen: list[Any] = []
    controller = Controller(engine, clock=clock, hooks=[touch, seen.append])
    result = controller.update("web", ServiceChange(image="app:crash"))
    assert result.outcome is Outcome.ROLLED_BACK, result.reason
    assert [kind for _, kind, _ in engine.updates] == ["update", "rollback"]
    crossed, started = (
        next(e for e in seen if isinstance(e, kind))
        for kind in (events.ThresholdCrossed, events.RollbackStarted)
    )
    assert started.elapsed == crossed.elapsed


def test_engine_own_rollback_is_reported_as_rolled_back_never_as_success(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service(
        "web", "app:1", replicas=4, update_config=UpdateConfig(failure_action="rollback")
    )
    engine.behave("app:crash", ImageBehaviour(fail_after=0.5))
    # our own action would only report: the engine's rollback is what happens
    controller, _seen = make(engine, clock, failure_action="continue")
    result = controller.update("web", ServiceChange(image="app:crash"))
    assert result.outcome is Outcome.ROLLED_BACK
    assert result.rollback_by == "engine"
    assert result.code == "engine_rolled_back"
    assert [kind for _, kind, _ in engine.updates] == ["update"]  # we sent no rollback


def test_engine_rollback_first_seen_when_already_completed_is_still_the_engines(
    engine: FakeEngine, clock: FakeClock
) -> None:
    # A slow poll may first see the rollback when its message is only
    # "rollback completed": PreviousSpec, cleared by the engine, still tells.
    engine.add_service(
        "web", "app:1", replicas=2, update_config=UpdateConfig(failure_action="rollback")
    )
    engine.behave("app:crash", ImageBehaviour(fail_after=0.5))

    def stall(event: Any) -> None:
        if isinstance(event, events.BatchStarted) and event.phase == "update":
            for _ in range(120):  # the engine goes on while we do not look
                clock.sleep(1)
                engine.inspect_service("web")

    controller = Controller(
        engine, clock=clock, hooks=[stall], options=RolloutOptions(failure_action="continue")
    )
    result = controller.update("web", ServiceChange(image="app:crash"))
    assert result.outcome is Outcome.ROLLED_BACK, result.reason
    assert result.rollback_by == "engine" and result.code == "engine_rolled_back"
    assert engine.inspect_service("web").update_status.message == "rollback completed"


def test_rollback_by_another_client_is_named_as_such(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web", "app:1", replicas=4)
    engine.behave("app:2", ImageBehaviour(start=5.0))

    def other_client(event: Any) -> None:
        if isinstance(event, events.TaskRunning) and event.phase == "update":
            service = engine.inspect_service("web")
            engine.update_service(service, service.spec, rollback=True)

    controller = Controller(engine, clock=clock, hooks=[other_client])
    result = controller.update("web", ServiceChange(image="app:2"))
    assert result.outcome is Outcome.ROLLED_BACK, result.reason
    assert result.rollback_by == "other" and result.code == "rolled_back_by_other"
    assert engine.inspect_service("web").image == "app:1"


def test_watch_follows_the_engines_own_rollback(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service(
        "web", "app:1", replicas=3, update_config=UpdateConfig(failure_action="rollback")
    )
    engine.behave("app:crash", ImageBehaviour(fail_after=0.5))
    service = engine.inspect_service("web")
    engine.update_service(service, ServiceChange(image="app:crash").apply(service.spec))
    for _ in range(20):  # until the engine has started its rollback
        clock.sleep(1)
        status = engine.inspect_service("web").update_status
        if status is not None and status.state.value.startswith("rollback"):
            break
    assert engine.inspect_service("web").previous_spec is None
    result = make(engine, clock)[0].watch("web")
    assert result.outcome is Outcome.ROLLED_BACK, result.reason
    assert result.rollback_by == "engine"
    assert engine.inspect_service("web").image == "app:1"


@pytest.mark.parametrize("ratio", [0.0, 0.5])
def test_new_task_on_a_node_that_goes_down_is_not_waited_for(
    engine: FakeEngine, clock: FakeClock, ratio: float
) -> None:
    # Swarm's updater waits forever for a task on a down node; we must not.
    engine.add_service(
        "web",
        "app:1",
        replicas=6,
        update_config=UpdateConfig(parallelism=1, max_failure_ratio=ratio),
    )
    engine.behave("app:2", ImageBehaviour(start=3.0))

    def lose_node(event: Any) -> None:
        if isinstance(event, events.BatchStarted) and event.batch == 2 and event.phase == "update":
            engine.down_nodes.add("node-3")

    controller = Controller(
        engine, clock=clock, hooks=[lose_node], options=RolloutOptions(task_deadline="120s")
    )
    start = clock.t
    result = controller.update("web", ServiceChange(image="app:2"))
    assert result.outcome is Outcome.ROLLED_BACK, result.reason
    assert result.code == "node_down"
    assert "node-3" in result.reason.message and "down" in result.reason.message
    assert clock.t - start < 60  # neither the task deadline nor the progress deadline
    failed = [t for b in result.batches for t in b.tasks if t.failure]
    assert [(t.node, t.failure) for t in failed] == [("node-3", "node_down")]
    assert engine.inspect_service("web").image == "app:1"


def test_never_ready_task_hits_task_deadline_then_rollback(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1", replicas=3)
    engine.behave("app:stuck", ImageBehaviour(never_ready=True))
    controller, seen = make(engine, clock, task_deadline="20s")
    start = clock.t
    result = controller.update("web", ServiceChange(image="app:stuck"))
    assert result.outcome is Outcome.ROLLED_BACK
    assert result.code == "task_deadline"
    failed = [e for e in seen if isinstance(e, events.TaskFailed)]
    assert failed and failed[0].cause == "task_deadline"
    assert 20 <= failed[0].elapsed <= 23
    assert clock.t - start < 60


def test_pending_forever_is_bounded_by_task_deadline(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web", "app:1", replicas=2)
    engine.behave("app:nowhere", ImageBehaviour(pending=True))
    controller, _ = make(engine, clock, task_deadline="15s")
    result = controller.update("web", ServiceChange(image="app:nowhere"))
    assert result.outcome is Outcome.ROLLED_BACK
    assert "no suitable node" in result.reason.message


def test_pause_action_leaves_the_update_and_reports_placement(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1", replicas=4)
    engine.behave("app:crash", ImageBehaviour(fail_after=1.0))
    controller, _ = make(engine, clock, failure_action="pause")
    result = controller.update("web", ServiceChange(image="app:crash"))
    assert result.outcome is Outcome.PAUSED
    assert result.exit_code == 3
    assert result.placement
    assert [kind for _, kind, _ in engine.updates] == ["update"]


def test_continue_action_reports_and_finishes_failed(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service(
        "web", "app:1", replicas=2, update_config=UpdateConfig(failure_action="continue")
    )
    engine.behave("app:crash", ImageBehaviour(fail_after=1.0))
    controller, seen = make(engine, clock, failure_action="continue", timeout="90s")
    result = controller.update("web", ServiceChange(image="app:crash"))
    assert result.outcome is Outcome.FAILED
    assert "threshold_crossed" in names(seen)
    assert "rollback_started" not in names(seen)


def test_failure_ratio_tolerates_failures_up_to_the_ratio(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service(
        "web",
        "app:1",
        replicas=4,
        update_config=UpdateConfig(max_failure_ratio=0.5, parallelism=4, failure_action="continue"),
    )
    engine.behave("app:flaky", ImageBehaviour(start=1.0))
    controller, _ = make(engine, clock)
    result = controller.update("web", ServiceChange(image="app:flaky"))
    assert result.outcome is Outcome.COMPLETED


def test_failing_gate_rolls_back(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web", "app:1", replicas=2)
    gate = CallableGate(lambda: False, name="smoke")
    controller, seen = make(engine, clock, gates=[gate])
    result = controller.update("web", ServiceChange(image="app:2"))
    assert result.outcome is Outcome.ROLLED_BACK
    assert result.code == "gate_failed"
    assert any(isinstance(e, events.GateFailed) and e.gate == "smoke" for e in seen)
    assert result.batches[0].gates[0].passed is False


def test_passing_gate_is_sampled_through_the_monitor_window(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1", replicas=2, update_config=UpdateConfig(monitor="5s"))
    calls: list[float] = []
    controller, _ = make(engine, clock, gates=[lambda: calls.append(clock.t) or True])
    result = controller.update("web", ServiceChange(image="app:2"))
    assert result.outcome is Outcome.COMPLETED
    assert all(g.passed and g.samples >= 4 for b in result.batches for g in b.gates)


def test_progress_deadline_fails_a_stalled_rollout(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web", "app:1", replicas=2)
    engine.behave("app:slow", ImageBehaviour(start=100.0))
    controller, _ = make(engine, clock, task_deadline=None, progress_deadline="30s")
    result = controller.update("web", ServiceChange(image="app:slow"))
    assert result.outcome is Outcome.ROLLED_BACK
    assert result.code == "progress_deadline"


def test_rollback_that_fails_is_reported_as_rollback_failed(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1", replicas=2)
    engine.behave("app:crash", ImageBehaviour(fail_after=1.0))
    engine.behave("app:1", ImageBehaviour(reject=True))  # the old image is gone too
    controller, _ = make(engine, clock)
    result = controller.update("web", ServiceChange(image="app:crash"))
    assert result.outcome is Outcome.ROLLBACK_FAILED
    assert result.exit_code == 4


def test_same_spec_is_a_noop_and_sends_nothing(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web", "app:1")
    controller, _ = make(engine, clock)
    result = controller.update("web", ServiceChange(image="app:1"))
    assert result.outcome is Outcome.COMPLETED
    assert result.code == "no_change"
    assert engine.updates == []


def test_label_only_change_completes_without_task_churn(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1")
    controller, _ = make(engine, clock)
    result = controller.update("web", ServiceChange(labels_add={"owner": "me"}))
    assert result.outcome is Outcome.COMPLETED and result.code == "spec_updated"
    assert engine.inspect_service("web").spec["Labels"] == {"team": "web", "owner": "me"}


def test_update_preserves_every_field_not_changed(engine: FakeEngine, clock: FakeClock) -> None:
    extra = {
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": "app:1",
                "Env": ["A=1", "B=2"],
                "Mounts": [{"Type": "tmpfs", "Target": "/x"}],
            },
            "Placement": {"Constraints": ["node.role==worker"]},
            "Resources": {"Limits": {"MemoryBytes": 10_000_000}},
            "ForceUpdate": 0,
        }
    }
    engine.add_service("web", "app:1", replicas=2, extra=extra)
    controller, _ = make(engine, clock)
    before = engine.inspect_service("web").spec
    controller.update("web", ServiceChange(image="app:2", env_add={"B": "3"}))
    after = engine.inspect_service("web").spec
    from zdd_swarm.spec import diff_specs

    assert diff_specs(before, after) == [
        "TaskTemplate.ContainerSpec.Env",
        "TaskTemplate.ContainerSpec.Image",
    ]
    assert after["TaskTemplate"]["ContainerSpec"]["Env"] == ["A=1", "B=3"]


def test_bad_input_raises_before_anything_is_sent(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web", "app:1")
    controller, _ = make(engine, clock)
    with pytest.raises(ServiceNotFound):
        controller.update("nope", ServiceChange(image="app:2"))
    with pytest.raises(InvalidImageReference):
        ServiceChange(image="App:Bad Ref")
    engine.manager = False
    with pytest.raises(NotAManager):
        controller.update("web", ServiceChange(image="app:2"))
    assert engine.updates == []


def test_concurrent_change_before_our_update_is_not_clobbered(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1")
    controller, _ = make(engine, clock)
    original_update = engine.update_service
    raced = {"done": False}

    def racing_update(service: Any, spec: Any, *, rollback: bool = False) -> list[str]:
        if not raced["done"]:
            raced["done"] = True
            engine.change_spec("web", lambda s: s["Labels"].update(other="client"))
        return original_update(service, spec, rollback=rollback)

    engine.update_service = racing_update  # type: ignore[method-assign]
    with pytest.raises(ConcurrentChange, match="Labels"):
        controller.update("web", ServiceChange(image="app:2"))
    assert engine.inspect_service("web").spec["Labels"]["other"] == "client"
    assert engine.updates == []


def test_change_by_another_client_during_rollout_is_superseded(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1", replicas=4)
    engine.behave("app:2", ImageBehaviour(start=5.0))

    def hook(event: Any) -> None:
        if isinstance(event, events.TaskRunning):
            engine.change_spec(
                "web", lambda s: s["TaskTemplate"]["ContainerSpec"].update(Image="app:3")
            )

    controller = Controller(engine, clock=clock, hooks=[hook])
    result = controller.update("web", ServiceChange(image="app:2"))
    assert result.outcome is Outcome.SUPERSEDED
    assert "TaskTemplate.ContainerSpec.Image" in result.reason.message
    assert engine.inspect_service("web").image == "app:3"
    assert [kind for _, kind, _ in engine.updates] == ["update"]


def test_update_while_another_is_in_progress_is_refused(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1", replicas=4)
    service = engine.inspect_service("web")
    engine.update_service(
        service,
        {
            **service.spec,
            "TaskTemplate": {**service.spec["TaskTemplate"], "ContainerSpec": {"Image": "app:2"}},
        },
    )
    controller, _ = make(engine, clock)
    with pytest.raises(UpdateInProgress):
        controller.update("web", ServiceChange(image="app:9"))


def test_watch_attaches_to_an_update_in_progress(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web", "app:1", replicas=4)
    service = engine.inspect_service("web")
    spec = dict(service.spec)
    spec["TaskTemplate"] = {**spec["TaskTemplate"], "ContainerSpec": {"Image": "app:2"}}
    engine.update_service(service, spec)
    controller, _ = make(engine, clock)
    result = controller.watch("web")
    assert result.outcome is Outcome.COMPLETED
    assert result.image_after == "app:2"


def test_rerunning_the_same_update_attaches_instead_of_sending_again(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1", replicas=4)
    engine.behave("app:crash", ImageBehaviour(fail_after=3.0))
    change = ServiceChange(image="app:crash")
    service = engine.inspect_service("web")
    engine.update_service(service, change.apply(service.spec))  # a controller that died
    controller, _ = make(engine, clock)
    result = controller.update("web", change)
    assert result.outcome is Outcome.ROLLED_BACK
    assert [kind for _, kind, _ in engine.updates] == ["update", "rollback"]


def test_watch_with_nothing_in_progress_is_completed(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web", "app:1")
    controller, _ = make(engine, clock)
    result = controller.watch("web")
    assert result.outcome is Outcome.COMPLETED and result.code == "no_update_in_progress"


def test_manual_rollback_command(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web", "app:1", replicas=2)
    controller, _ = make(engine, clock)
    assert controller.update("web", ServiceChange(image="app:2")).outcome is Outcome.COMPLETED
    result = controller.rollback("web")
    assert result.outcome is Outcome.COMPLETED and result.code == "rollback_completed"
    assert engine.inspect_service("web").image == "app:1"


def test_engine_outage_is_ridden_out_without_a_second_update(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1", replicas=4)
    engine.behave("app:2", ImageBehaviour(start=3.0))
    controller = Controller(engine, clock=clock)
    fired = {"done": False}

    def hook(event: Any) -> None:
        if isinstance(event, events.TaskRunning) and not fired["done"]:
            fired["done"] = True
            engine.down_until = clock.t + 20

    controller.hooks.append(hook)
    result = controller.update("web", ServiceChange(image="app:2"))
    assert result.outcome is Outcome.COMPLETED
    assert [kind for _, kind, _ in engine.updates] == ["update"]


def test_engine_gone_for_too_long_raises(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web", "app:1", replicas=2)
    engine.behave("app:2", ImageBehaviour(start=3.0))
    controller = Controller(engine, clock=clock, options=RolloutOptions(engine_outage="10s"))
    controller.hooks.append(
        lambda e: (
            setattr(engine, "down_until", clock.t + 1000)
            if isinstance(e, events.RolloutStarted)
            else None
        )
    )
    with pytest.raises(EngineUnavailable):
        controller.update("web", ServiceChange(image="app:2"))


def test_events_are_logged_with_service_and_batch_bound(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1", replicas=2)
    controller, _ = make(engine, clock)
    with capture_logs() as logs:
        controller.update("web", ServiceChange(image="app:2"))
    started = [e for e in logs if e["event"] == "batch_started"]
    assert started and started[0]["service"] == "web" and started[0]["batch"] == 0
    assert logs[-1]["event"] == "rollout_finished" and logs[-1]["outcome"] == "completed"


def test_a_failing_hook_never_changes_the_outcome(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web", "app:1", replicas=2)

    def broken(_: Any) -> None:
        raise RuntimeError("notifier down")

    controller = Controller(engine, clock=clock, hooks=[broken])
    assert controller.update("web", ServiceChange(image="app:2")).outcome is Outcome.COMPLETED


def test_rollback_config_governs_the_rollback(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web", "app:1", replicas=4, rollback_config=RollbackConfig(parallelism=4))
    engine.behave("app:crash", ImageBehaviour(fail_after=1.0))
    controller, _ = make(engine, clock, failure_action=FailureAction.ROLLBACK)
    result = controller.update("web", ServiceChange(image="app:crash"))
    rollback_batches = [b for b in result.batches if b.phase == "rollback"]
    assert result.outcome is Outcome.ROLLED_BACK
    assert len(rollback_batches) == 1
