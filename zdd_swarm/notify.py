"""Webhook notifications of rollouts: a hook that never holds a rollout up.

``WebhookNotifier`` is a hook: on the events it is told to send (by
default: started, threshold crossed, rollback started, finished) it puts a
JSON body on a queue and returns at once. A background thread POSTs the
bodies in order, each with a timeout and a few retries (tenacity). A webhook
that is down, slow or refuses is logged once as a warning and is otherwise
ignored: the rollout's decisions, result and duration do not depend on it.

Bodies are masked (``zdd_swarm.redact``) as the CLI's output is, and carry
no spec: the service, the images, counts, codes and messages.

``close(timeout)`` waits (at most ``timeout`` seconds) for what is queued;
the CLI calls it after the rollout has ended and been reported.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from . import events
from ._logging import get_logger
from .redact import mask_url, mask_values

__all__ = ["DEFAULT_EVENTS", "Transport", "WebhookError", "WebhookNotifier", "urllib_transport"]

log = get_logger("zdd_swarm.notify")

DEFAULT_EVENTS: tuple[type[events.Event], ...] = (
    events.RolloutStarted,
    events.ThresholdCrossed,
    events.RollbackStarted,
    events.RolloutFinished,
)

Transport = Callable[[str, bytes, Mapping[str, str], float], int]
"""``(url, body, headers, timeout) -> HTTP status``; raises ``OSError`` when
the webhook cannot be reached in time."""


class WebhookError(Exception):
    """A webhook answered with a status that is not 2xx."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status

    @property
    def transient(self) -> bool:
        """5xx and 429: a later try may succeed; other 4xx will not."""
        return self.status >= 500 or self.status == 429


def urllib_transport(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    """POST with the standard library (no extra dependency)."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, WebhookError):
        return exc.transient
    return isinstance(exc, OSError)


_STOP = object()


class WebhookNotifier:
    """A hook that POSTs rollout events to ``url`` as JSON.

    ``format="json"`` sends ``{"event": ..., "service": ..., "text": ..., ...}``
    (the event's fields, masked); ``format="slack"`` sends ``{"text": ...}``,
    which Slack, Mattermost and Rocket.Chat incoming webhooks accept.
    ``timeout`` bounds one attempt; ``attempts`` tries at most that many
    times, waiting ``backoff`` seconds, doubling, in between.
    ``transport`` and ``sleep`` are seams for tests.
    """

    def __init__(
        self,
        url: str,
        *,
        format: Literal["json", "slack"] = "json",
        events: Iterable[type[events.Event]] = DEFAULT_EVENTS,
        timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.5,
        headers: Mapping[str, str] | None = None,
        transport: Transport = urllib_transport,
        sleep: Callable[[float], None] = time.sleep,
        max_queued: int = 100,
    ) -> None:
        if format not in ("json", "slack"):
            raise ValueError(f"format must be 'json' or 'slack', not {format!r}")
        self.url = url
        self.format = format
        self.events = tuple(events)
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.transport = transport
        self.sleep = sleep
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_queued)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._warned = False
        self._down = False

    def __repr__(self) -> str:
        return f"WebhookNotifier({mask_url(self.url)!r}, format={self.format!r})"

    # -- the hook ---------------------------------------------------------------

    def __call__(self, event: events.Event) -> None:
        if not isinstance(event, self.events):
            return
        try:
            self._queue.put_nowait(self.body(event))
        except queue.Full:
            self.dropped += 1
            self._warn("webhook_queue_full", "the webhook's queue is full; an event was dropped")
            return
        self._start()

    def body(self, event: events.Event) -> dict[str, Any]:
        """The JSON body sent for ``event`` (masked)."""
        text = describe(event)
        if self.format == "slack":
            return {"text": mask_values(text)}
        data: dict[str, Any] = {"event": event.name, "service": event.service, "text": text}
        data.update(event.fields())
        if isinstance(event, events.RolloutFinished) and event.result is not None:
            result = event.result
            data.update(
                duration_s=result.duration_s,
                image_before=result.image_before,
                image_target=result.image_target,
                image_after=result.image_after,
                failures=result.failures,
                total=result.total,
                batches=len(result.batches),
                rollback_by=result.rollback_by,
                exit_code=result.exit_code,
            )
        masked: dict[str, Any] = mask_values(data)
        return masked

    # -- delivery ---------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="zdd-swarm-webhook", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                assert isinstance(item, dict)
                self._deliver(item)
            finally:
                self._queue.task_done()

    def _deliver(self, body: Mapping[str, Any]) -> None:
        data = json.dumps(body, default=str).encode()
        # once a webhook has failed every attempt, later bodies get one
        # attempt each until one goes through: a webhook that is down costs
        # its retries once, not once per event
        retrying = Retrying(
            stop=stop_after_attempt(1 if self._down else self.attempts),
            wait=wait_exponential(multiplier=self.backoff, max=30),
            retry=retry_if_exception(_retryable),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    status = self.transport(self.url, data, self.headers, self.timeout)
                    if not 200 <= status < 300:
                        raise WebhookError(status)
        except Exception as exc:
            self.failed += 1
            self._down = True
            self._warn("webhook_failed", f"{type(exc).__name__}: {exc}")
        else:
            self.sent += 1
            self._down = False

    def _warn(self, what: str, error: str) -> None:
        """Once per notifier: a webhook that is down would otherwise say so
        for every event."""
        if self._warned:
            return
        self._warned = True
        log.warning(what, url=mask_url(self.url), error=mask_values(error))

    def close(self, timeout: float | None = None) -> bool:
        """Send what is queued, waiting at most ``timeout`` seconds (default:
        one attempt's timeout); True when everything was delivered or given up."""
        thread = self._thread
        if thread is None:
            return True
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        with contextlib.suppress(queue.Full):  # then the join below times out
            self._queue.put(_STOP, timeout=max(wait, 0.001))
        thread.join(max(0.0, deadline - time.monotonic()))
        done = not thread.is_alive()
        if not done:
            self._warn("webhook_slow", f"notifications still queued after {wait:g}s; not waiting")
        return done


def describe(event: events.Event) -> str:
    """One line for people, as a chat message."""
    s = event.service
    if isinstance(event, events.RolloutStarted):
        verb = {"rollback": "rolling back", "watch": "watching the update of"}.get(
            event.phase, "updating"
        )
        return (
            f"{s}: {verb} {event.image_before} -> {event.image_after} "
            f"({event.total} tasks, parallelism {event.parallelism or 'all'}, {event.order})"
        )
    if isinstance(event, events.ThresholdCrossed):
        return f"{s}: threshold crossed ({event.code}): {event.reason}; action: {event.action}"
    if isinstance(event, events.RollbackStarted):
        return f"{s}: rollback started by {event.by}: {event.reason}"
    if isinstance(event, events.RolloutFinished):
        return f"{s}: {event.outcome} ({event.code}) after {event.elapsed:.1f}s: {event.reason}"
    return f"{s}: {event.name.replace('_', ' ')}"
