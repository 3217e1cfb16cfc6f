"""Progress a person can read: a hook that renders events.

On a terminal, a live progress bar (rich) with a line per notable event;
elsewhere, plain lines. Either way it is only a subscriber to events.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import IO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from . import events
from .redact import mask_secrets
from .result import RolloutResult

__all__ = ["PipeConsole", "ProgressDisplay", "render_result", "stdout_to_devnull"]


def stdout_to_devnull() -> None:
    """The reader of stdout went away (``zdd-swarm status web | head -1``).

    As the Python docs advise for SIGPIPE ("Note on SIGPIPE", signal module):
    point stdout at devnull, so that later writes and the flush at exit raise
    nothing. The program carries on: a rollout being shown is still followed
    to its outcome, and the exit code stays the command's.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (a test's capture): drop it
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    finally:
        os.close(devnull)


class PipeConsole(Console):
    """A rich console that goes quiet when its pipe is closed. rich's own
    ``on_broken_pipe`` raises ``SystemExit(1)``, which from a hook would stop
    watching a rollout the engine goes on with."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        if self.file is sys.stdout:
            stdout_to_devnull()


class ProgressDisplay:
    """A hook: ``Controller(hooks=[ProgressDisplay()])``."""

    def __init__(self, file: IO[str] | None = None, live: bool | None = None) -> None:
        self.console = PipeConsole(file=file, highlight=False, soft_wrap=True)
        self.live = self.console.is_terminal if live is None else live
        self._progress: Progress | None = None
        self._bars: dict[str, TaskID] = {}
        # a stack rolls the services of one wave from threads, to one display
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        text = mask_secrets(text)
        if self._progress is not None:
            self._progress.console.print(text)
        else:
            self.console.print(text, markup=False)

    def _bar(self, phase: str, total: int) -> None:
        if not self.live:
            return
        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[failed]} failed"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
        if phase not in self._bars:
            self._bars[phase] = self._progress.add_task(phase, total=total, failed=0)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._bars.clear()

    def _finished(self, service: str) -> None:
        """One rollout's bars end; the display closes with the last."""
        for key in [k for k in self._bars if k.startswith(f"{service} ")]:
            if self._progress is not None:
                self._progress.remove_task(self._bars[key])
            del self._bars[key]
        if not self._bars:
            self.close()

    def __call__(self, event: events.Event) -> None:
        with self._lock:
            self._show(event)

    def _show(self, event: events.Event) -> None:
        t = f"[{event.elapsed:6.1f}s]"
        s = event.service
        if isinstance(event, events.RolloutStarted):
            self._line(
                f"{t} {event.service}: {event.phase} {event.image_before} -> "
                f"{event.image_after}, {event.total} tasks, parallelism "
                f"{event.parallelism or 'all'}, {event.order}"
            )
            phase = event.phase if event.phase != "watch" else "update"
            self._bar(f"{s} {phase}", event.total)
        elif isinstance(event, events.BlueGreenStage):
            verdict = "done" if event.ok else f"FAILED: {event.detail}"
            if event.samples and event.ok:
                verdict += f" ({event.samples} check samples, {event.failed} failed)"
            self._line(f"{t} {s}: {event.stage} ({event.colour}) {verdict}")
        elif isinstance(event, events.CanaryStep):
            self._line(f"{t} {s}: canary step {event.index + 1} of {event.total}: {event.step}")
        elif isinstance(event, events.BatchStarted):
            self._line(f"{t} {s}: {event.phase} batch {event.batch + 1} started")
        elif isinstance(event, events.TaskRunning):
            took = f" after {event.seconds_to_running:.1f}s" if event.seconds_to_running else ""
            self._line(f"{t} {s}:   task {event.task_id[:12]} running on {event.node}{took}")
        elif isinstance(event, events.TaskFailed):
            self._line(
                f"{t} {s}:   task {event.task_id[:12]} on {event.node} FAILED "
                f"({event.cause}): {event.error or event.state}"
            )
        elif isinstance(event, events.GateFailed):
            self._line(
                f"{t} {s}:   gate {event.gate} FAILED on batch {event.batch + 1}: {event.detail}"
            )
        elif isinstance(event, events.BatchCompleted):
            self._line(
                f"{t} {s}: batch {event.batch + 1} healthy through its monitor window "
                f"({event.seconds:.1f}s)"
            )
        elif isinstance(event, events.ThresholdCrossed):
            self._line(
                f"{t} {s}: THRESHOLD CROSSED ({event.code}): {event.reason} -> {event.action}"
            )
        elif isinstance(event, events.RollbackStarted):
            self._line(f"{t} {s}: ROLLBACK started by {event.by}: {event.reason}")
            self._bar(f"{s} rollback", 0)
        elif isinstance(event, events.EngineUnreachable):
            self._line(
                f"{t} {s}: engine unreachable for {event.seconds:.0f}s, retrying: {event.error}"
            )
        elif isinstance(event, events.Progress):
            if self._progress is not None:
                key = f"{s} {event.phase}"
                self._bar(key, event.total)
                self._progress.update(
                    self._bars[key],
                    completed=event.running,
                    total=event.total,
                    failed=event.failed,
                )
        elif isinstance(event, events.RolloutFinished):
            self._finished(s)
            self._line(
                f"{t} {event.service}: {event.outcome.upper()} ({event.code}): {event.reason}"
            )


def render_result(result: RolloutResult, console: Console) -> None:
    """A short summary: outcome, batches, durations (secret values masked)."""

    def say(text: str, markup: bool = True) -> None:
        console.print(mask_secrets(text), markup=markup)

    say(
        f"\n{result.service}: [bold]{result.outcome.value}[/bold] "
        f"(exit {result.exit_code}) in {result.duration_s:.1f}s"
    )
    say(f"  reason: {result.reason.message} [{result.reason.code}]", markup=False)
    say(
        f"  image: {result.image_before} -> target {result.image_target}; now {result.image_after}",
        markup=False,
    )
    for batch in result.batches:
        took = ""
        if batch.running_at is not None:
            took = f", running after {batch.running_at - batch.started_at:.1f}s"
        state = "FAILED" if batch.failed else ("ok" if batch.completed_at is not None else "-")
        say(
            f"  {batch.phase} batch {batch.index + 1}: {len(batch.tasks)} tasks, {state}{took}",
            markup=False,
        )
        for task in batch.tasks:
            extra = f" {task.failure}: {task.error}" if task.failure else ""
            say(f"    {task.id[:12]} {task.node:<10} {task.state}{extra}", markup=False)
    for warning in result.warnings:
        say(f"  warning: {warning}", markup=False)
