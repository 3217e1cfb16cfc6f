"""Views built from real Engine API JSON (lab dumps in tests/fixtures)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from zdd_swarm.model import ServiceView, TaskState, TaskView, UpdateState, parse_timestamp


def test_parse_timestamp_with_nanoseconds() -> None:
    assert parse_timestamp("2026-11-23T06:30:00.123456789Z") == datetime(
        2026, 11, 23, 6, 30, 0, 123456, tzinfo=UTC
    )
    assert parse_timestamp("0001-01-01T00:00:00Z") is None
    assert parse_timestamp(None) is None


_PLUS_ONE = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "2026-11-23T10:00:00.123456789+01:00",
            datetime(2026, 11, 23, 10, 0, 0, 123456, _PLUS_ONE),
        ),
        ("2026-11-23T10:00:00+01:00", datetime(2026, 11, 23, 10, 0, 0, tzinfo=_PLUS_ONE)),
        ("2026-11-23T10:00:00.5-05:30", datetime(2026, 11, 23, 15, 30, 0, 500000, UTC)),
        ("2026-11-23T10:00:00.123456789Z", datetime(2026, 11, 23, 10, 0, 0, 123456, UTC)),
        ("2026-11-23T10:00:00Z", datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)),
        ("2026-11-23T10:00:00.1z", datetime(2026, 11, 23, 10, 0, 0, 100000, UTC)),
        ("2026-11-23T10:00:00.000000001+0100", datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)),
        ("2026-11-23T10:00:00.123", datetime(2026, 11, 23, 10, 0, 0, 123000, UTC)),
        ("2026-11-23 10:00:00+00:00", datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_with_a_zone_offset_and_any_fraction(text: str, expected: datetime) -> None:
    # a daemon outside UTC writes its local offset (Go's RFC3339Nano)
    parsed = parse_timestamp(text)
    assert parsed == expected and parsed is not None and parsed.tzinfo is not None


def test_a_timestamp_that_is_not_one_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")


def test_task_states_are_ordered_like_swarm() -> None:
    assert TaskState.RUNNING.rank > TaskState.STARTING.rank
    assert TaskState.FAILED.terminal and not TaskState.PENDING.terminal
    assert TaskState.parse("bogus") is TaskState.ORPHANED


def test_task_view_from_api() -> None:
    task = TaskView.from_api(
        {
            "ID": "t1",
            "ServiceID": "s1",
            "Slot": 2,
            "NodeID": "n1",
            "CreatedAt": "2026-11-23T06:30:00.1Z",
            "Spec": {"ContainerSpec": {"Image": "app:2"}},
            "DesiredState": "running",
            "Status": {
                "State": "failed",
                "Err": "task: non-zero exit (1)",
                "ContainerStatus": {"ExitCode": 1},
            },
            "NetworksAttachments": [{"Addresses": ["10.0.1.5/24"]}],
        }
    )
    assert task.failed and task.exit_code == 1 and task.image == "app:2"
    assert task.addresses == ("10.0.1.5",)


def test_service_view_from_api() -> None:
    service = ServiceView.from_api(
        {
            "ID": "s1",
            "Version": {"Index": 42},
            "Spec": {
                "Name": "web",
                "TaskTemplate": {"ContainerSpec": {"Image": "app:2"}},
                "Mode": {"Replicated": {"Replicas": 6}},
            },
            "PreviousSpec": {"TaskTemplate": {"ContainerSpec": {"Image": "app:1"}}},
            "UpdateStatus": {
                "State": "rollback_started",
                "Message": "m",
                "StartedAt": "2026-11-23T06:30:00Z",
            },
        }
    )
    assert (service.name, service.version, service.replicas) == ("web", 42, 6)
    assert service.image == "app:2" and service.previous_image == "app:1"
    assert service.state is UpdateState.ROLLBACK_STARTED
    global_service = ServiceView.from_api({"ID": "g", "Spec": {"Mode": {"Global": {}}}})
    assert global_service.replicas is None and global_service.state is None


def test_real_engine_dumps_tell_new_tasks_from_old() -> None:
    """JSON kept from engine 20.10 after a start-first update: the task Spec
    lacks the service template's Runtime field, yet new tasks match."""
    import json
    from pathlib import Path

    fixtures = Path(__file__).parent.parent / "fixtures"
    service = ServiceView.from_api(json.loads((fixtures / "service_after_update.json").read_text()))
    tasks = [
        TaskView.from_api(t) for t in json.loads((fixtures / "tasks_after_update.json").read_text())
    ]
    assert "Runtime" in service.spec["TaskTemplate"]
    new = [t for t in tasks if t.spec_key == service.task_key]
    old = [t for t in tasks if t.spec_key != service.task_key]
    assert new and old
    assert {t.image for t in new} == {service.image}
    wanted = [t for t in tasks if t.desired_state is TaskState.RUNNING]
    assert len(wanted) == 2 and all(t in new and t.running for t in wanted)
    assert all(t.desired_state is TaskState.SHUTDOWN for t in old)
    assert service.state is UpdateState.COMPLETED


def test_a_task_says_the_ports_it_publishes_on_its_node() -> None:
    """JSON kept from engine 28.5 (the lab): a task of a service that publishes
    9999 in host mode (the engine lists the port twice in its PortStatus)."""
    import json
    from pathlib import Path

    fixtures = Path(__file__).parent.parent / "fixtures"
    (task,) = [
        TaskView.from_api(t) for t in json.loads((fixtures / "task_host_port.json").read_text())
    ]
    assert task.running and task.host_ports == ((9999, 9999),)
    spec = {"EndpointSpec": {"Ports": [{"TargetPort": 9999, "PublishMode": "host"}]}}
    assert ServiceView.from_api({"ID": "r", "Spec": spec}).host_ports == ((9999, 0),)
    ingress = {"EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": 80}]}}
    assert ServiceView.from_api({"ID": "r", "Spec": ingress}).host_ports == ()
