"""Webhook notifications against real HTTP receivers on loopback: one that
answers, one that is down (a closed port) and one slower than the timeout.
The rollout's decisions, result and duration are those of a run without
webhooks, and it is not held up in real time either."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from click.testing import CliRunner

from zdd_swarm import Controller, ServiceChange, UpdateConfig, events
from zdd_swarm.cli import _Obj, cli
from zdd_swarm.notify import WebhookNotifier
from zdd_swarm.testing import FakeClock, FakeEngine, ImageBehaviour

from .conftest import Receiver, free_port

SECRET = "s3cr3t-Value-42"


def crash_engine() -> tuple[FakeEngine, FakeClock]:
    clock = FakeClock()
    engine = FakeEngine(clock)
    engine.add_service("web", "app:1", replicas=4, update_config=UpdateConfig(parallelism=2))
    engine.behave(
        "app:crash", ImageBehaviour(fail_after=1.0, error=f"refused DB_PASSWORD={SECRET}")
    )
    return engine, clock


def test_a_real_receiver_gets_the_four_events_in_order_without_secrets(
    receiver: Callable[..., Receiver],
) -> None:
    got = receiver()
    engine, clock = crash_engine()
    notifier = WebhookNotifier(got.url, timeout=2)
    result = Controller(engine, clock=clock, hooks=[notifier]).update(
        "web", ServiceChange(image="app:crash")
    )
    assert notifier.close(5) and notifier.sent == 4
    assert [b["event"] for b in got.bodies] == [
        "rollout_started",
        "threshold_crossed",
        "rollback_started",
        "rollout_finished",
    ]
    assert got.bodies[-1]["outcome"] == result.outcome.value == "rolled_back"
    assert SECRET not in json.dumps(got.bodies)


def test_down_and_slow_webhooks_change_nothing_and_hold_nothing_up(
    receiver: Callable[..., Receiver],
) -> None:
    engine, clock = crash_engine()
    baseline = Controller(engine, clock=clock).update("web", ServiceChange(image="app:crash"))

    engine, clock = crash_engine()
    good, slow = receiver(), receiver(delay=30)
    down = f"http://127.0.0.1:{free_port()}/hook"
    notifiers = [WebhookNotifier(url, timeout=1, backoff=0.1) for url in (good.url, slow.url, down)]
    finished_at: list[float] = []

    def clock_out(event: events.Event) -> None:
        if isinstance(event, events.RolloutFinished):
            finished_at.append(time.monotonic())

    began = time.monotonic()
    result = Controller(engine, clock=clock, hooks=[*notifiers, clock_out]).update(
        "web", ServiceChange(image="app:crash")
    )
    returned = time.monotonic()
    # the rollout ran at the fake engine's speed: a webhook attempt (1 s) was never waited for
    assert returned - began < 0.5
    assert (result.outcome, result.code, result.duration_s, result.failures) == (
        baseline.outcome,
        baseline.code,
        baseline.duration_s,
        baseline.failures,
    )
    assert [b.phase for b in result.batches] == [b.phase for b in baseline.batches]
    deadline = time.monotonic() + 1.5
    for notifier in notifiers:
        notifier.close(max(0.0, deadline - time.monotonic()))
    assert good.received.is_set() and len(good.bodies) == 4
    assert notifiers[0].sent == 4
    assert notifiers[2].failed >= 1 and notifiers[2].sent == 0  # the one that is down
    assert notifiers[1].sent == 0  # the slow one: every attempt timed out


def test_cli_with_a_down_and_a_slow_webhook_exits_as_without_them(
    receiver: Callable[..., Receiver],
) -> None:
    def cli_run(*extra: str) -> tuple[Any, float]:
        engine, clock = crash_engine()
        began = time.monotonic()
        result = CliRunner().invoke(
            cli,
            ["update", "web", "--image", "app:crash", "--json", *extra],
            obj=_Obj(engine_factory=lambda host: engine, clock=clock),
        )
        return result, time.monotonic() - began

    baseline, _ = cli_run()
    slow = receiver(delay=30)
    down = f"http://127.0.0.1:{free_port()}/hook"
    result, took = cli_run(
        "--notify-webhook", slow.url, "--notify-webhook", down, "--notify-timeout", "1"
    )
    assert result.exit_code == baseline.exit_code == 1
    same = ("outcome", "code", "duration_s", "failures", "exit_code")
    data, expected = json.loads(result.stdout), json.loads(baseline.stdout)
    assert {k: data[k] for k in same} == {k: expected[k] for k in same}
    assert took < 3  # at most one --notify-timeout waited for, at the exit
    # one warning per webhook, whatever the number of events
    warnings = [line for line in result.stderr.splitlines() if "webhook_" in line]
    assert len(warnings) == 2, result.stderr
    assert "/hook" not in result.stderr  # a webhook's path may be its secret


def test_slack_format_through_the_cli(receiver: Callable[..., Receiver]) -> None:
    got = receiver()
    engine, clock = crash_engine()
    result = CliRunner().invoke(
        cli,
        [
            *("update", "web", "--image", "app:crash"),
            *("--notify-webhook", got.url, "--notify-format", "slack"),
        ],
        obj=_Obj(engine_factory=lambda host: engine, clock=clock),
    )
    assert result.exit_code == 1
    assert len(got.bodies) == 4 and all(set(b) == {"text"} for b in got.bodies)
    assert got.bodies[-1]["text"].startswith("web: rolled_back (task_failed)")
    assert SECRET not in json.dumps(got.bodies)
