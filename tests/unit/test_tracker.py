"""The tracker's decisions fed observation by observation (no engine, no loop)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from zdd_swarm import RolloutOptions, ServiceChange, UpdateConfig
from zdd_swarm.model import ServiceView, TaskView
from zdd_swarm.tracker import RequestRollback, Tracker

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OLD: dict[str, Any] = {
    "Name": "web",
    "TaskTemplate": {"ContainerSpec": {"Image": "app:1"}},
    "Mode": {"Replicated": {"Replicas": 1}},
    "UpdateConfig": UpdateConfig(monitor="5s").to_api(),
}
NEW = ServiceChange(image="app:2").apply(OLD)


def service(spec: dict[str, Any], state: str = "updating") -> ServiceView:
    return ServiceView.from_api(
        {
            "ID": "s1",
            "Version": {"Index": 2},
            "Spec": spec,
            "PreviousSpec": OLD,
            "UpdateStatus": {"State": state, "StartedAt": T0.isoformat()},
        }
    )


def task(state: str, at: float, error: str = "") -> TaskView:
    return TaskView.from_api(
        {
            "ID": "t1",
            "ServiceID": "s1",
            "Slot": 1,
            "NodeID": "n1",
            "CreatedAt": T0.isoformat(),
            "Spec": NEW["TaskTemplate"],
            "DesiredState": "running",
            "Status": {
                "State": state,
                "Err": error,
                "Timestamp": (T0 + timedelta(seconds=at)).isoformat(),
            },
        }
    )


def test_a_failure_within_monitor_counts_though_seen_late() -> None:
    tracker = Tracker(
        "web",
        original_spec=OLD,
        target_spec=NEW,
        total=1,
        settings=RolloutOptions().tracker_settings(),
        start=0.0,
    )
    tracker.observe(1.0, service(NEW), [task("starting", 0.5)], {"n1": "node-1"})
    tracker.observe(2.0, service(NEW), [task("running", 2.0)], {"n1": "node-1"})
    # failed 4.5 s after RUNNING (monitor 5 s), first seen 9 s after it
    step = tracker.observe(11.0, service(NEW), [task("failed", 6.5, "exit 1")], {"n1": "node-1"})
    assert isinstance(step.action, RequestRollback)
    assert step.action.reason.code == "task_failed"


def test_a_failure_after_monitor_does_not_count() -> None:
    tracker = Tracker(
        "web",
        original_spec=OLD,
        target_spec=NEW,
        total=1,
        settings=RolloutOptions().tracker_settings(),
        start=0.0,
    )
    tracker.observe(2.0, service(NEW), [task("running", 2.0)], {"n1": "node-1"})
    step = tracker.observe(9.0, service(NEW), [task("failed", 8.5, "exit 1")], {"n1": "node-1"})
    assert step.action is None
    assert tracker.failures == 0


def test_a_requested_rollback_that_swarm_paused_is_not_the_engines() -> None:
    from zdd_swarm.tracker import rollback_initiator

    paused = ServiceView.from_api(
        {
            "ID": "s1",
            "Version": {"Index": 3},
            "Spec": OLD,
            "PreviousSpec": NEW,
            "UpdateStatus": {
                "State": "rollback_paused",
                "StartedAt": T0.isoformat(),
                "Message": "rollback paused due to failure or early termination of task t1",
            },
        }
    )
    assert rollback_initiator(paused) == "other"
    engine_own = ServiceView.from_api(
        {
            "ID": "s1",
            "Version": {"Index": 3},
            "Spec": OLD,
            "UpdateStatus": {
                "State": "rollback_started",
                "StartedAt": T0.isoformat(),
                "Message": "update rolled back due to failure or early termination of task t1",
            },
        }
    )
    assert rollback_initiator(engine_own) == "engine"


def old_task(task_id: str, state: str, at: float, error: str = "") -> TaskView:
    return TaskView.from_api(
        {
            "ID": task_id,
            "ServiceID": "s1",
            "Slot": 1,
            "NodeID": "n1",
            "CreatedAt": (T0 + timedelta(seconds=at)).isoformat(),
            "Spec": OLD["TaskTemplate"],
            "DesiredState": "running",
            "Status": {
                "State": state,
                "Err": error,
                "Timestamp": (T0 + timedelta(seconds=at)).isoformat(),
            },
        }
    )


def rolling_back(state: str, message: str) -> ServiceView:
    return ServiceView.from_api(
        {
            "ID": "s1",
            "Version": {"Index": 4},
            "Spec": OLD,
            "PreviousSpec": NEW,
            "UpdateStatus": {"State": state, "StartedAt": T0.isoformat(), "Message": message},
        }
    )


def _rolled_back_after_failure() -> Tracker:
    tracker = Tracker(
        "web",
        original_spec=OLD,
        target_spec=NEW,
        total=1,
        settings=RolloutOptions().tracker_settings(),
        start=0.0,
    )
    tracker.observe(1.0, service(NEW), [task("running", 1.0)], {"n1": "node-1"})
    step = tracker.observe(2.0, service(NEW), [task("failed", 1.5, "exit 1")], {"n1": "node-1"})
    assert isinstance(step.action, RequestRollback)
    tracker.begin_rollback(2.1, "zdd_swarm", step.action.reason)
    return tracker


def test_the_replaced_updates_late_pause_does_not_end_our_rollback() -> None:
    # swarmkit's update updater, cancelled by our rollback, may still pause
    # the service for its own task: the rollback goes on regardless
    from zdd_swarm import Outcome
    from zdd_swarm.tracker import Finish

    tracker = _rolled_back_after_failure()
    stale = rolling_back(
        "rollback_paused", "update paused due to failure or early termination of task t1"
    )
    failed = task("failed", 1.5, "exit 1")
    step = tracker.observe(3.0, stale, [failed, old_task("t2", "starting", 2.5)], {})
    assert step.action is None
    step = tracker.observe(4.0, stale, [failed, old_task("t2", "running", 3.5)], {})
    assert step.action is None
    done = rolling_back("completed", "update completed")
    step = tracker.observe(9.0, done, [failed, old_task("t2", "running", 3.5)], {})
    assert isinstance(step.action, Finish)
    assert step.action.outcome is Outcome.ROLLED_BACK


def test_a_pause_for_the_rollbacks_own_task_ends_it_as_failed() -> None:
    from zdd_swarm import Outcome
    from zdd_swarm.tracker import Finish

    tracker = _rolled_back_after_failure()
    own = rolling_back(
        "rollback_paused", "update paused due to failure or early termination of task t2"
    )
    step = tracker.observe(4.0, own, [old_task("t2", "failed", 3.5, "exit 1")], {})
    assert isinstance(step.action, Finish)
    assert step.action.outcome is Outcome.ROLLBACK_FAILED
    assert step.action.reason.code == "rollback_paused"


def test_a_stale_pause_that_never_clears_ends_at_the_rollback_deadline() -> None:
    from zdd_swarm import Outcome
    from zdd_swarm.tracker import Finish

    tracker = _rolled_back_after_failure()
    stale = rolling_back(
        "rollback_paused", "update paused due to failure or early termination of task t1"
    )
    step = tracker.observe(3.0, stale, [], {})
    assert step.action is None
    step = tracker.observe(2.1 + 301, stale, [], {})
    assert isinstance(step.action, Finish)
    assert step.action.outcome is Outcome.ROLLBACK_FAILED
    assert step.action.reason.code == "rollback_deadline"
    assert "task t1" in step.action.reason.message


def test_a_pause_for_a_task_ended_by_a_drain_says_so() -> None:
    tracker = Tracker(
        "web",
        original_spec=OLD,
        target_spec=NEW,
        total=1,
        settings=RolloutOptions().tracker_settings(),
        start=0.0,
    )
    tracker.observe(1.0, service(NEW), [task("running", 1.0)], {"n1": "node-1"})
    paused = ServiceView.from_api(
        {
            "ID": "s1",
            "Version": {"Index": 3},
            "Spec": NEW,
            "PreviousSpec": OLD,
            "UpdateStatus": {
                "State": "paused",
                "StartedAt": T0.isoformat(),
                "Message": "update paused due to failure or early termination of task t1",
            },
        }
    )
    ended = TaskView.from_api({**task("shutdown", 2.0).raw, "DesiredState": "shutdown"})
    step = tracker.observe(3.0, paused, [ended], {"n1": "node-1"}, drained_nodes={"n1"})
    assert isinstance(step.action, RequestRollback)
    assert step.action.reason.code == "engine_paused"
    assert "shut down by the drain of node node-1" in step.action.reason.message
    # the same pause on a node that is not drained is the engine's message alone
    other = Tracker(
        "web",
        original_spec=OLD,
        target_spec=NEW,
        total=1,
        settings=RolloutOptions().tracker_settings(),
        start=0.0,
    )
    other.observe(1.0, service(NEW), [task("running", 1.0)], {"n1": "node-1"})
    step = other.observe(3.0, paused, [ended], {"n1": "node-1"})
    assert isinstance(step.action, RequestRollback)
    assert "drain" not in step.action.reason.message
