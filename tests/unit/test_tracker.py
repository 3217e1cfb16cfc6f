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
    return ServiceView.from_api({
        "ID": "s1", "Version": {"Index": 2}, "Spec": spec, "PreviousSpec": OLD,
        "UpdateStatus": {"State": state, "StartedAt": T0.isoformat()}})


def task(state: str, at: float, error: str = "") -> TaskView:
    return TaskView.from_api({
        "ID": "t1", "ServiceID": "s1", "Slot": 1, "NodeID": "n1",
        "CreatedAt": T0.isoformat(), "Spec": NEW["TaskTemplate"], "DesiredState": "running",
        "Status": {"State": state, "Err": error,
                   "Timestamp": (T0 + timedelta(seconds=at)).isoformat()}})


def test_a_failure_within_monitor_counts_though_seen_late() -> None:
    tracker = Tracker("web", original_spec=OLD, target_spec=NEW, total=1,
                      settings=RolloutOptions().tracker_settings(), start=0.0)
    tracker.observe(1.0, service(NEW), [task("starting", 0.5)], {"n1": "node-1"})
    tracker.observe(2.0, service(NEW), [task("running", 2.0)], {"n1": "node-1"})
    # failed 4.5 s after RUNNING (monitor 5 s), first seen 9 s after it
    step = tracker.observe(11.0, service(NEW), [task("failed", 6.5, "exit 1")], {"n1": "node-1"})
    assert isinstance(step.action, RequestRollback)
    assert step.action.reason.code == "task_failed"


def test_a_failure_after_monitor_does_not_count() -> None:
    tracker = Tracker("web", original_spec=OLD, target_spec=NEW, total=1,
                      settings=RolloutOptions().tracker_settings(), start=0.0)
    tracker.observe(2.0, service(NEW), [task("running", 2.0)], {"n1": "node-1"})
    step = tracker.observe(9.0, service(NEW), [task("failed", 8.5, "exit 1")], {"n1": "node-1"})
    assert step.action is None
    assert tracker.failures == 0


def test_a_requested_rollback_that_swarm_paused_is_not_the_engines() -> None:
    from zdd_swarm.tracker import rollback_initiator

    paused = ServiceView.from_api({
        "ID": "s1", "Version": {"Index": 3}, "Spec": OLD, "PreviousSpec": NEW,
        "UpdateStatus": {"State": "rollback_paused", "StartedAt": T0.isoformat(),
                         "Message": "rollback paused due to failure or early termination "
                                    "of task t1"}})
    assert rollback_initiator(paused) == "other"
    engine_own = ServiceView.from_api({
        "ID": "s1", "Version": {"Index": 3}, "Spec": OLD,
        "UpdateStatus": {"State": "rollback_started", "StartedAt": T0.isoformat(),
                         "Message": "update rolled back due to failure or early "
                                    "termination of task t1"}})
    assert rollback_initiator(engine_own) == "engine"
