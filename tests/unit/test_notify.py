"""The webhook hook: bodies, retries and failures, with a fake transport."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from zdd_swarm import Controller, ServiceChange, UpdateConfig, events
from zdd_swarm.notify import WebhookNotifier
from zdd_swarm.testing import FakeClock, FakeEngine, ImageBehaviour

SECRET = "s3cr3t-Value-42"
URL = "https://hooks.example.test/services/T0/B0/" + SECRET


class Receiver:
    """A transport that records bodies and answers with scripted statuses."""

    def __init__(self, *statuses: int | Exception) -> None:
        self.statuses = list(statuses)
        self.bodies: list[dict[str, Any]] = []
        self.calls = 0

    def __call__(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        self.calls += 1
        assert headers["Content-Type"] == "application/json"
        status = self.statuses.pop(0) if self.statuses else 200
        if isinstance(status, Exception):
            raise status
        self.bodies.append(json.loads(body))
        return status


def crash_rollout(engine: FakeEngine, clock: FakeClock, notifier: WebhookNotifier) -> Any:
    engine.add_service(
        "web",
        "app:1",
        replicas=2,
        update_config=UpdateConfig(parallelism=1),
    )
    engine.behave(
        "app:crash", ImageBehaviour(fail_after=1.0, error=f"bad env DB_PASSWORD={SECRET}")
    )
    result = Controller(engine, clock=clock, hooks=[notifier]).update(
        "web", ServiceChange(image="app:crash")
    )
    assert notifier.close(5)
    return result


def test_started_threshold_rollback_and_finished_are_posted_in_order(
    engine: FakeEngine, clock: FakeClock
) -> None:
    receiver = Receiver()
    result = crash_rollout(engine, clock, WebhookNotifier(URL, transport=receiver))
    assert [b["event"] for b in receiver.bodies] == [
        "rollout_started",
        "threshold_crossed",
        "rollback_started",
        "rollout_finished",
    ]
    finished = receiver.bodies[-1]
    assert finished["service"] == "web"
    assert finished["outcome"] == "rolled_back" == result.outcome.value
    assert finished["code"] == "task_failed"
    assert finished["exit_code"] == 1
    assert finished["image_target"] == "app:crash"
    assert finished["text"].startswith("web: rolled_back (task_failed)")


def test_no_secret_in_any_body(engine: FakeEngine, clock: FakeClock) -> None:
    receiver = Receiver()
    crash_rollout(engine, clock, WebhookNotifier(URL, transport=receiver))
    sent = json.dumps(receiver.bodies)
    assert SECRET not in sent
    assert "DB_PASSWORD=***" in sent


def test_slack_format_is_a_text_body(engine: FakeEngine, clock: FakeClock) -> None:
    receiver = Receiver()
    crash_rollout(engine, clock, WebhookNotifier(URL, format="slack", transport=receiver))
    assert all(set(body) == {"text"} for body in receiver.bodies)
    assert receiver.bodies[0]["text"].startswith("web: updating app:1 -> app:crash")
    assert SECRET not in json.dumps(receiver.bodies)


def test_transient_failures_are_retried_with_backoff() -> None:
    receiver = Receiver(503, OSError("connection refused"), 200)
    slept: list[float] = []
    notifier = WebhookNotifier(URL, transport=receiver, sleep=slept.append, attempts=3)
    notifier(events.RolloutFinished("web", 1.0, "completed", "update_completed", "ok"))
    assert notifier.close(5)
    assert receiver.calls == 3 and notifier.sent == 1 and notifier.failed == 0
    assert slept == [0.5, 1.0]


def test_a_client_error_is_not_retried_and_is_one_warning() -> None:
    receiver = Receiver(404, 404)
    notifier = WebhookNotifier(URL, transport=receiver, sleep=lambda s: None)
    with capture_logs() as logs:
        notifier(events.RolloutFinished("web", 1.0, "completed", "update_completed", "ok"))
        notifier(events.RolloutFinished("web", 1.0, "completed", "update_completed", "ok"))
        assert notifier.close(5)
    assert receiver.calls == 2 and notifier.failed == 2
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["event"] == "webhook_failed"
    assert SECRET not in json.dumps(logs, default=str)  # the URL's path is its secret


def test_the_hook_returns_at_once_while_the_webhook_hangs(
    engine: FakeEngine, clock: FakeClock
) -> None:
    release = threading.Event()

    def hanging(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        release.wait(10)
        return 200

    notifier = WebhookNotifier(URL, transport=hanging)
    engine.add_service("web", "app:1", replicas=2)
    result = Controller(engine, clock=clock, hooks=[notifier]).update(
        "web", ServiceChange(image="app:2")
    )
    assert result.outcome.value == "completed"
    with capture_logs() as logs:
        assert not notifier.close(0.1)
    assert [e["event"] for e in logs] == ["webhook_slow"]
    release.set()


def test_events_not_asked_for_are_not_sent() -> None:
    receiver = Receiver()
    notifier = WebhookNotifier(URL, transport=receiver, events=[events.RolloutFinished])
    notifier(events.Progress("web", 1.0, "update", 1, 2, 0))
    notifier(events.RolloutFinished("web", 1.0, "completed", "update_completed", "ok"))
    assert notifier.close(5)
    assert [b["event"] for b in receiver.bodies] == ["rollout_finished"]


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError):
        WebhookNotifier(URL, format="xml")  # type: ignore[arg-type]
