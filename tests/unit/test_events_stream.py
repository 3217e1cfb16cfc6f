"""The engine's event stream: early wake-ups of the watch loop, never needed
for a verdict."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from zdd_swarm.controller import _TaskCadence
from zdd_swarm.engine import ServiceEvents


class Stream:
    """A stream that yields an event whenever ``push`` is called."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.closed = False
        self.attributes: dict[str, str] = {}

    def push(self, **attributes: str) -> None:
        self.attributes = attributes
        self.ready.set()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while not self.closed:
            if self.ready.wait(0.05):
                self.ready.clear()
                actor = {"ID": "s1", "Attributes": dict(self.attributes)}
                yield {"Type": "service", "Action": "update", "Actor": actor}

    def close(self) -> None:
        self.closed = True


def test_an_event_ends_the_wait_early() -> None:
    stream = Stream()
    events = ServiceEvents(lambda: stream)
    threading.Timer(0.1, stream.push).start()
    start = time.monotonic()
    assert events.wait(5.0) is True
    assert time.monotonic() - start < 2.0
    assert events.wait(0.05) is False  # consumed
    events.close()
    assert stream.closed


def test_a_stream_that_cannot_open_leaves_polling_alone() -> None:
    def broken() -> Any:
        raise OSError("connection refused")

    events = ServiceEvents(broken)
    deadline = time.monotonic() + 2
    while events.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not events.alive
    start = time.monotonic()
    events.wait(0.1)
    assert time.monotonic() - start >= 0.09  # a plain sleep, no busy loop


class Alive:
    alive = True


def test_with_events_the_service_is_inspected_on_change_and_every_fifth_poll() -> None:
    cadence = _TaskCadence(1.0, Alive())  # type: ignore[arg-type]
    due = [cadence.service_due() for _ in range(11)]
    assert due == [True, False, False, False, False, True, False, False, False, False, True]
    cadence.service_changed()
    assert cadence.service_due() is True
    assert cadence.service_due() is False


def test_without_events_the_cadence_is_unchanged() -> None:
    cadence = _TaskCadence(1.0)
    assert [cadence.service_due() for _ in range(4)] == [True, False, True, False]


def _view(version: int, state: str | None = None) -> Any:
    return SimpleNamespace(version=version, update_status=state)


def _task(task_id: str) -> Any:
    return SimpleNamespace(id=task_id, state="running", desired_state="running", node_id="n1")


def test_with_events_changing_tasks_are_listed_every_other_poll() -> None:
    cadence = _TaskCadence(1.0, Alive())  # type: ignore[arg-type]
    listed = []
    for poll in range(8):
        if cadence.tasks_due(float(poll), _view(1)):
            listed.append(poll)
            cadence.listed(float(poll), [_task(str(poll))], rolling_back=False)  # new each time
    assert listed == [0, 2, 4, 6]


def test_with_events_a_rollback_lists_changing_tasks_every_fifth_poll() -> None:
    cadence = _TaskCadence(1.0, Alive())  # type: ignore[arg-type]
    listed = []
    for poll in range(11):
        if cadence.tasks_due(float(poll), _view(1)):
            listed.append(poll)
            cadence.listed(float(poll), [_task(str(poll))], rolling_back=True)
    assert listed == [0, 5, 10]


def test_without_events_a_rollback_lists_changing_tasks_on_every_poll() -> None:
    cadence = _TaskCadence(1.0)
    listed = []
    for poll in range(4):
        if cadence.tasks_due(float(poll), _view(1)):
            listed.append(poll)
            cadence.listed(float(poll), [_task(str(poll))], rolling_back=True)
    assert listed == [0, 1, 2, 3]


def test_with_events_a_service_change_lists_the_tasks_at_once() -> None:
    cadence = _TaskCadence(1.0, Alive())  # type: ignore[arg-type]
    assert cadence.tasks_due(0.0, _view(1))
    cadence.listed(0.0, [_task("a")], rolling_back=False)
    assert not cadence.tasks_due(1.0, _view(1))
    assert cadence.tasks_due(1.0, _view(2, "paused"))


def test_with_events_a_watch_from_a_fresh_view_does_not_inspect_it_again() -> None:
    cadence = _TaskCadence(1.0, Alive(), fresh=True)  # type: ignore[arg-type]
    assert cadence.service_due() is False
    assert _TaskCadence(1.0, fresh=True).service_due() is True  # no stream: polling alone


def test_with_events_a_rollback_lists_the_tasks_at_its_end_not_at_each_change() -> None:
    cadence = _TaskCadence(1.0, Alive())  # type: ignore[arg-type]
    assert cadence.tasks_due(0.0, _view(1, _status("rollback_started")), rolling_back=True)
    cadence.listed(0.0, [_task("a")], rolling_back=True)
    assert not cadence.tasks_due(1.0, _view(2, _status("rollback_started")), rolling_back=True)
    assert cadence.tasks_due(1.0, _view(3, _status("rollback_completed")), rolling_back=True)


def _status(state: str) -> Any:
    from zdd_swarm.model import UpdateState

    return SimpleNamespace(state=UpdateState(state))


def test_an_event_says_the_update_state_it_carries() -> None:
    stream = Stream()
    events = ServiceEvents(lambda: stream)
    threading.Timer(0.1, lambda: stream.push(**{"updatestate.new": "rollback_started"})).start()
    assert events.wait(5.0) is True
    assert events.update_state == "rollback_started"
    threading.Timer(0.1, stream.push).start()  # a change with no update status
    assert events.wait(5.0) is True
    assert events.update_state is None
    events.close()


class Woken:
    """A stream that has always just woken the loop, with ``update_state``."""

    alive = True

    def __init__(self, update_state: str | None) -> None:
        self.update_state = update_state

    def wait(self, timeout: float) -> bool:
        return True


def test_during_a_rollback_only_the_events_of_its_end_are_worth_a_look() -> None:
    from zdd_swarm.controller import Controller
    from zdd_swarm.testing import FakeClock, FakeEngine

    clock = FakeClock()
    controller = Controller(FakeEngine(clock), clock=clock)
    for state, rolling_back, looks in [
        ("rollback_started", True, False),
        ("updating", True, False),
        ("rollback_completed", True, True),
        (None, True, True),
        ("updating", False, True),
    ]:
        cadence = _TaskCadence(1.0, Woken(state))  # type: ignore[arg-type]
        cadence.service_due()  # the first look
        controller._pause(cadence, 1.0, rolling_back)
        assert cadence.service_due() is looks, (state, rolling_back)


def test_with_events_a_rollback_sent_lists_its_tasks_at_the_rollbacks_pace() -> None:
    cadence = _TaskCadence(1.0, Alive())  # type: ignore[arg-type]
    assert cadence.tasks_due(0.0, _view(1))
    cadence.listed(0.0, [_task("a")], rolling_back=False)  # changing: every other poll
    cadence.rollback_sent()
    assert cadence.service_due() is True  # what we held predates the rollback
    assert [cadence.tasks_due(float(t), _view(1)) for t in (2, 4, 5)] == [False, False, True]
