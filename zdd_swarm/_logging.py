"""The library's loggers: structlog bound loggers over stdlib ``logging``.

Every log event goes to the stdlib logger ``zdd_swarm`` (or a child such as
``zdd_swarm.engine``), so the library is as quiet as any stdlib library
until the application configures logging: nothing on stdout, and only
warnings and errors on stderr through ``logging``'s last-resort handler.

Nothing here touches structlog's global configuration: our loggers carry
their own processors, and an application's ``structlog.configure`` neither
changes them nor is changed by them. The record's message is the event dict
(as ``structlog.stdlib.ProcessorFormatter.wrap_for_formatter`` makes it), so
a ``ProcessorFormatter`` renders our events as key/values or JSON, and a
plain ``logging.Formatter`` prints ``event key=value ...``. See
``docs/logging.md``.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import structlog
from structlog.testing import LogCapture
from structlog.typing import EventDict, WrappedLogger

__all__ = ["LOGGER_NAME", "get_logger"]

LOGGER_NAME = "zdd_swarm"


class _EventDict(dict[str, Any]):
    """The event dict as a record's message: ``ProcessorFormatter`` copies it
    as a dict; any other formatter prints it as ``event key=value ...``."""

    def __str__(self) -> str:
        parts = [str(self.get("event", ""))]
        for key, value in self.items():
            if key == "event" or key.startswith("_") or key == "exc_info":
                continue
            text = str(value)
            if isinstance(value, str) and (not text or " " in text or "=" in text):
                text = repr(value)
            parts.append(f"{key}={text}")
        return " ".join(parts)


def _captured(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Inside ``structlog.testing.capture_logs()`` our events are captured
    too, as they were when the library logged through structlog's global
    configuration (the capture's ``LogCapture`` then ends the chain)."""
    configured = structlog.get_config()["processors"]
    if configured and isinstance(configured[-1], LogCapture):
        for processor in list(configured):
            event_dict = cast(EventDict, processor(logger, method_name, event_dict))
    return event_dict


def _to_stdlib(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The last processor: the arguments of the stdlib logger's method, as
    ``ProcessorFormatter.wrap_for_formatter`` builds them."""
    kwargs: dict[str, Any] = {"extra": {"_logger": logger, "_name": method_name}}
    if event_dict.get("exc_info"):
        kwargs["exc_info"] = event_dict["exc_info"]
    return (_EventDict(event_dict),), kwargs


_PROCESSORS: list[Any] = [
    _captured,
    structlog.stdlib.filter_by_level,
    structlog.contextvars.merge_contextvars,
    _to_stdlib,
]


def get_logger(name: str = LOGGER_NAME, **initial_values: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger that writes to the stdlib logger ``name``."""
    return cast(
        structlog.stdlib.BoundLogger,
        structlog.wrap_logger(
            logging.getLogger(name),
            processors=_PROCESSORS,
            wrapper_class=structlog.stdlib.BoundLogger,
            context_class=dict,
            cache_logger_on_first_use=False,
            **initial_values,
        ),
    )
