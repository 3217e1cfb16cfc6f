"""The library is silent unless asked: its logs go to the stdlib logger
``zdd_swarm``, which an application configures (or not)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import pytest
import structlog
from structlog.testing import capture_logs

from zdd_swarm import Controller, ServiceChange
from zdd_swarm.testing import FakeClock, FakeEngine, ImageBehaviour

SCRIPT = """
import zdd_swarm
from zdd_swarm.testing import FakeClock, FakeEngine, ImageBehaviour

clock = FakeClock()
engine = FakeEngine(clock)
engine.add_service("web", "app:1", replicas=4)
engine.behave("app:crash", ImageBehaviour(fail_after=1.0))
{setup}
result = zdd_swarm.Controller(engine, clock=clock).update(
    "web", zdd_swarm.ServiceChange(image="app:{tag}"))
assert result.outcome.value == "{outcome}", result.summary()
"""


def run(tag: str, outcome: str, setup: str = "") -> subprocess.CompletedProcess[str]:
    code = SCRIPT.format(tag=tag, outcome=outcome, setup=textwrap.dedent(setup))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_an_unconfigured_program_prints_nothing_for_a_good_rollout() -> None:
    done = run("2", "completed")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == ""


def test_an_unconfigured_program_gets_warnings_on_stderr_only() -> None:
    done = run("crash", "rolled_back")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "rollback_started service=web " in done.stderr
    assert " by=zdd_swarm " in done.stderr
    assert "rollout_started" not in done.stderr  # info is not shown


def test_the_applications_structlog_config_is_not_ours() -> None:
    # An application that prints its own structlog events on stdout does not
    # get ours there; ours still go through logging.
    done = run(
        "2",
        "completed",
        setup="""
        import logging, structlog
        structlog.configure(logger_factory=structlog.PrintLoggerFactory())
        structlog.get_logger().info("mine")
        logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
        """,
    )
    assert done.returncode == 0, done.stderr
    assert "mine" in done.stdout
    assert "rollout" not in done.stdout
    assert "zdd_swarm INFO rollout_started service=web" in done.stderr
    assert "zdd_swarm INFO rollout_finished service=web" in done.stderr


def test_processor_formatter_renders_our_events_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ]
        )
    )
    logger = logging.getLogger("zdd_swarm")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    clock = FakeClock()
    engine = FakeEngine(clock)
    engine.add_service("web", "app:1", replicas=2)
    Controller(engine, clock=clock).update("web", ServiceChange(image="app:2"))
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["event"] == "rollout_started"
    assert lines[0]["level"] == "info" and lines[0]["logger"] == "zdd_swarm"
    assert lines[0]["image_after"] == "app:2"
    assert lines[-1]["event"] == "rollout_finished" and lines[-1]["outcome"] == "completed"


def test_capture_logs_still_collects_our_events() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock)
    engine.add_service("web", "app:1", replicas=2)
    engine.behave("app:crash", ImageBehaviour(fail_after=1.0))
    with capture_logs() as logs:
        Controller(engine, clock=clock).update("web", ServiceChange(image="app:crash"))
    started = [e for e in logs if e["event"] == "rollback_started"]
    assert started[0]["log_level"] == "warning" and started[0]["service"] == "web"
    assert logs[0]["event"] == "rollout_started" and logs[0]["log_level"] == "info"
