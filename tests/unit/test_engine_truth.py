"""Engine truth: the update's scope, deadlines and verdicts as Swarm's own
updater has them, in simulated time against the fake engine (which follows
swarmkit's controlapi and updater: no status when nothing is dirty)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from zdd_swarm import Controller, Outcome, RolloutOptions, ServiceChange, UpdateConfig
from zdd_swarm.config import AUTO, RollbackConfig, expected_seconds
from zdd_swarm.errors import UnsupportedServiceMode, UpdatePaused
from zdd_swarm.model import ServiceView, TaskView, UpdateState
from zdd_swarm.testing import FakeClock, FakeEngine, ImageBehaviour
from zdd_swarm.tracker import NO_STATUS_GRACE, Finish, Tracker


def controller(engine: FakeEngine, clock: FakeClock, **options: Any) -> Controller:
    return Controller(engine, clock=clock, options=RolloutOptions(**options))


def test_watch_after_a_completed_update_changes_nothing_whatever_the_tasks_did(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1", replicas=3)
    assert (
        controller(engine, clock).update("web", ServiceChange(image="app:2")).outcome
        is Outcome.COMPLETED
    )
    # the kernel kills one task long after; Swarm restarts it
    task = next(t for t in engine.tasks[engine._find("web").id] if t.state == "running")
    task.state, task.error, task.exit_code = "failed", "task: non-zero exit (137)", 137
    task.changed_at = clock.t
    sent = list(engine.updates)
    result = controller(engine, clock).watch("web")
    assert result.outcome is Outcome.COMPLETED and result.code == "already_completed"
    assert engine.updates == sent  # no rollback sent
    assert engine.inspect_service("web").image == "app:2"


def test_watch_reports_an_ended_rollback_and_pause(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web", "app:1", replicas=2)
    engine.behave("app:crash", ImageBehaviour(fail_after=0.5))
    ctl = controller(engine, clock)
    assert ctl.update("web", ServiceChange(image="app:crash")).outcome is Outcome.ROLLED_BACK
    result = ctl.watch("web")
    assert (result.outcome, result.code) == (Outcome.ROLLED_BACK, "already_rolled_back")
    engine._find("web").status = {"State": "rollback_paused", "Message": "rollback paused"}
    result = ctl.watch("web")
    assert (result.outcome, result.code) == (Outcome.ROLLBACK_FAILED, "rollback_paused")


def test_zero_replicas_complete_in_seconds_without_a_status(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1", replicas=0)
    start = clock.t
    result = controller(engine, clock).update("web", ServiceChange(image="app:2"))
    assert result.outcome is Outcome.COMPLETED and result.code == "nothing_to_replace"
    assert clock.t - start <= NO_STATUS_GRACE + 2
    assert engine.inspect_service("web").update_status is None


def test_placement_only_change_the_nodes_satisfy_completes_without_replacing(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1", replicas=3)
    ids = {t.id for t in engine.tasks[engine._find("web").id]}

    def place(spec: dict[str, Any]) -> None:
        spec["TaskTemplate"]["Placement"] = {"Constraints": ["node.role==worker"]}

    change = ServiceChange(patch=place)
    result = controller(engine, clock).update("web", change)
    assert result.outcome is Outcome.COMPLETED and result.code == "nothing_to_replace"
    assert {t.id for t in engine.tasks[engine._find("web").id]} == ids


def test_endpoint_only_change_is_followed_like_any_update(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1", replicas=2)
    ids = {t.id for t in engine.tasks[engine._find("web").id]}

    def vip(spec: dict[str, Any]) -> None:
        spec["EndpointSpec"] = {"Mode": "vip"}

    result = controller(engine, clock).update("web", ServiceChange(patch=vip))
    assert result.outcome is Outcome.COMPLETED and result.code == "update_completed"
    running = {t.id for t in engine.tasks[engine._find("web").id] if t.state == "running"}
    assert len(running) == 2 and not running & ids


def test_a_monitor_longer_than_the_progress_deadline_is_not_a_stall(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service(
        "web", "app:1", replicas=2, update_config=UpdateConfig(parallelism=2, monitor="120s")
    )
    result = controller(engine, clock, progress_deadline="30s").update(
        "web", ServiceChange(image="app:2")
    )
    assert result.outcome is Outcome.COMPLETED, result.reason


def test_a_real_stall_still_fails_after_the_deadline_and_the_engines_waits(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1", replicas=2, update_config=UpdateConfig(monitor="20s"))
    engine.behave("app:stuck", ImageBehaviour(pending=True))
    seen: list[Any] = []
    ctl = Controller(
        engine,
        clock=clock,
        hooks=[seen.append],
        options=RolloutOptions(progress_deadline="30s", task_deadline=None),
    )
    result = ctl.update("web", ServiceChange(image="app:stuck"))
    assert result.outcome is Outcome.ROLLED_BACK and result.code == "progress_deadline"
    crossed = next(e for e in seen if e.name == "threshold_crossed")
    assert crossed.elapsed > 30 + 20


@pytest.mark.parametrize("mode", ["ReplicatedJob", "GlobalJob"])
def test_jobs_are_refused_before_anything_is_sent(
    engine: FakeEngine, clock: FakeClock, mode: str
) -> None:
    engine.add_service("job", "app:1", replicas=1, extra={"Mode": {mode: {}}})
    with pytest.raises(UnsupportedServiceMode, match="job"):
        controller(engine, clock).update("job", ServiceChange(image="app:2"))
    assert engine.updates == []


@pytest.mark.parametrize("state", ["paused", "rollback_paused"])
def test_the_same_spec_on_a_paused_update_is_refused(
    engine: FakeEngine, clock: FakeClock, state: str
) -> None:
    engine.add_service("web", "app:1", replicas=2)
    ctl = controller(engine, clock)
    assert ctl.update("web", ServiceChange(image="app:2")).outcome is Outcome.COMPLETED
    engine._find("web").status = {"State": state, "Message": "paused due to failure of task x"}
    with pytest.raises(UpdatePaused, match="half way"):
        ctl.update("web", ServiceChange(image="app:2"))
    assert ctl.update("web", ServiceChange(image="app:2", force=True)).outcome is Outcome.COMPLETED


def test_a_scale_with_the_update_counts_the_new_replicas(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service("web", "app:1", replicas=2)

    def four(spec: dict[str, Any]) -> None:
        spec["Mode"] = {"Replicated": {"Replicas": 4}}

    change = ServiceChange(image="app:2", patch=four)
    result = controller(engine, clock).update("web", change)
    assert result.outcome is Outcome.COMPLETED and result.total == 4
    running = [t for t in engine.tasks[engine._find("web").id] if t.state == "running"]
    assert len(running) == 4


def test_auto_deadlines_scale_with_the_config() -> None:
    slow = RollbackConfig(parallelism=1, delay="40s")
    expected = expected_seconds(slow, 10)
    assert expected == 10 * (10 + 40) + 41
    settings = RolloutOptions().tracker_settings(0.0, expected)
    assert settings.rollback_timeout == timedelta(seconds=3 * expected)
    assert RolloutOptions().tracker_settings().rollback_timeout == timedelta(minutes=5)
    assert RolloutOptions(rollback_timeout="1m").tracker_settings(0, expected).rollback_timeout == (
        timedelta(minutes=1)
    )
    assert RolloutOptions(timeout=AUTO).timeout == AUTO


def test_a_slow_healthy_rollback_is_not_rollback_failed(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service(
        "web",
        "app:1",
        replicas=10,
        update_config=UpdateConfig(parallelism=10),
        rollback_config=RollbackConfig(parallelism=1, delay="40s"),
    )
    engine.behave("app:crash", ImageBehaviour(fail_after=0.5))
    result = controller(engine, clock).update("web", ServiceChange(image="app:crash"))
    assert result.outcome is Outcome.ROLLED_BACK, result.reason
    assert engine.inspect_service("web").state is UpdateState.ROLLBACK_COMPLETED


def test_plan_shows_expected_durations_and_warns_of_short_deadlines(
    engine: FakeEngine, clock: FakeClock
) -> None:
    engine.add_service(
        "web",
        "app:1",
        replicas=4,
        update_config=UpdateConfig(parallelism=1, delay="30s"),
        rollback_config=RollbackConfig(parallelism=1, delay="30s"),
    )
    ctl = controller(engine, clock, timeout="1m", rollback_timeout="1m")
    plan = ctl.plan("web", ServiceChange(image="app:2"))
    assert plan.estimated_seconds == 4 * 40 + 31 and plan.rollback_seconds == 4 * 40 + 31
    assert any(w.startswith("timeout_too_short") for w in plan.warnings)
    assert any(w.startswith("rollback_timeout_too_short") for w in plan.warnings)


@pytest.mark.parametrize("action", ["pause", "continue"])
def test_the_rollback_honours_its_own_failure_action(action: str) -> None:
    old: dict[str, Any] = {
        "Name": "web",
        "TaskTemplate": {"ContainerSpec": {"Image": "app:1"}},
        "Mode": {"Replicated": {"Replicas": 2}},
        "RollbackConfig": RollbackConfig(failure_action=action).to_api(),
    }
    new = ServiceChange(image="app:2").apply(old)
    tracker = Tracker(
        "web",
        original_spec=old,
        target_spec=new,
        total=2,
        settings=RolloutOptions().tracker_settings(),
        start=0.0,
        phase="rollback",
    )
    rolling_back = ServiceView.from_api(
        {
            "ID": "s1",
            "Version": {"Index": 3},
            "Spec": old,
            "UpdateStatus": {"State": "rollback_started", "StartedAt": "2026-01-01T00:00:00Z"},
        }
    )
    rejected = TaskView.from_api(
        {
            "ID": "t1",
            "Slot": 1,
            "NodeID": "n1",
            "Spec": old["TaskTemplate"],
            "DesiredState": "running",
            "Status": {"State": "rejected", "Err": "no such image"},
        }
    )
    step = tracker.observe(1.0, rolling_back, [rejected], {"n1": "node-1"})
    if action == "pause":
        assert isinstance(step.action, Finish) and step.action.reason.code == "rollback_task_failed"
    else:  # Swarm goes on past it, and so do we
        assert step.action is None


def test_continue_ends_when_the_engine_completes(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service(
        "web",
        "app:1",
        replicas=3,
        update_config=UpdateConfig(parallelism=3, failure_action="continue"),
    )
    engine.behave("app:crash", ImageBehaviour(fail_after=1.0))
    start = clock.t
    result = controller(engine, clock, failure_action="continue").update(
        "web", ServiceChange(image="app:crash")
    )
    assert result.outcome is Outcome.FAILED and result.code == "task_failed", result.reason
    assert clock.t - start < 60


def test_a_manual_rollback_has_one_outcome_everywhere(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web", "app:1", replicas=2)
    seen: list[Any] = []
    ctl = Controller(engine, clock=clock, hooks=[seen.append])
    assert ctl.update("web", ServiceChange(image="app:2")).outcome is Outcome.COMPLETED
    result = ctl.rollback("web")
    finished = [e for e in seen if e.name == "rollout_finished"][-1]
    assert (result.outcome, result.code) == (Outcome.COMPLETED, "rollback_completed")
    assert (finished.outcome, finished.code) == ("completed", "rollback_completed")
    assert finished.result is result


def test_a_batch_is_announced_with_all_its_slots(engine: FakeEngine, clock: FakeClock) -> None:
    engine.add_service("web", "app:1", replicas=4, update_config=UpdateConfig(parallelism=2))
    seen: list[Any] = []
    Controller(engine, clock=clock, hooks=[seen.append]).update("web", ServiceChange(image="app:2"))
    started = [e for e in seen if e.name == "batch_started"]
    assert [len(e.slots) for e in started] == [2, 2]
