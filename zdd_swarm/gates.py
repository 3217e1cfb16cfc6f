"""Gates: checks of our own, run while a batch is in its monitor window.

A gate is sampled repeatedly from the moment all tasks of a batch are
RUNNING until the window (the update config's ``monitor``) ends; the batch
passes if the share of successful samples reaches ``min_success_ratio``.
Any callable returning a bool (or raising) can be a gate.
"""

from __future__ import annotations

import inspect
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .errors import ConfigError

__all__ = [
    "CallableGate",
    "Gate",
    "GateSample",
    "HttpGate",
    "TcpGate",
    "as_gate",
    "as_gates",
    "parse_http_gate",
    "parse_tcp_gate",
]


@dataclass(frozen=True)
class GateSample:
    ok: bool
    detail: str = ""


@runtime_checkable
class Gate(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def min_success_ratio(self) -> float:
        """Share of samples that must succeed over the window, 0..1."""
        ...

    def sample(self) -> GateSample: ...


_GATE_ALLOWED = (
    "a gate (HttpGate, TcpGate, CallableGate, or an object with name, "
    "min_success_ratio and sample()) or a callable taking no arguments that returns a bool"
)


def _check_ratio(value: float, field: str = "min_success_ratio") -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0.0 <= value <= 1.0  # also rejects NaN
    ):
        raise ConfigError(field, value, "a number between 0 and 1")


def _check_callable(field: str, value: object) -> None:
    """A gate's check is called with no arguments: say so now, not when the
    first batch is sampled (a class or a function needing arguments fails there)."""
    if not callable(value):
        raise ConfigError(field, value, _GATE_ALLOWED)
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):  # some builtins have none; calling them will tell
        return
    try:
        signature.bind()
    except TypeError:
        raise ConfigError(field, value, _GATE_ALLOWED + f" (it takes {signature})") from None


@dataclass(frozen=True)
class HttpGate:
    """GET ``url``; a sample succeeds when the status is ``expect_status``."""

    url: str
    expect_status: int = 200
    min_success_ratio: float = 1.0
    timeout: float = 2.0
    name: str = field(default="")

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError("gate.url", self.url, "an http:// or https:// URL")
        if not 100 <= self.expect_status <= 599:
            raise ConfigError("gate.expect_status", self.expect_status, "an HTTP status code")
        if self.timeout <= 0:
            raise ConfigError("gate.timeout", self.timeout, "a positive number of seconds")
        _check_ratio(self.min_success_ratio)
        if not self.name:
            object.__setattr__(self, "name", f"http {self.url}")

    def sample(self) -> GateSample:
        request = urllib.request.Request(self.url, method="GET")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = int(exc.code)
        except (OSError, ValueError) as exc:
            return GateSample(False, f"{type(exc).__name__}: {exc}")
        ok = status == self.expect_status
        return GateSample(ok, f"HTTP {status}")


@dataclass(frozen=True)
class TcpGate:
    """Open a TCP connection to ``host:port``."""

    host: str
    port: int
    min_success_ratio: float = 1.0
    timeout: float = 2.0
    name: str = field(default="")

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError("gate.port", self.port, "a TCP port, 1-65535")
        _check_ratio(self.min_success_ratio)
        if not self.name:
            object.__setattr__(self, "name", f"tcp {self.host}:{self.port}")

    def sample(self) -> GateSample:
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout):
                return GateSample(True, "connected")
        except OSError as exc:
            return GateSample(False, f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class CallableGate:
    """Any callable: True passes, False or an exception fails."""

    check: Callable[[], bool]
    name: str = "check"
    min_success_ratio: float = 1.0

    def __post_init__(self) -> None:
        _check_callable("gate.check", self.check)
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("gate.name", self.name, "a non-empty string")
        _check_ratio(self.min_success_ratio)

    def sample(self) -> GateSample:
        try:
            return GateSample(bool(self.check()))
        except Exception as exc:
            return GateSample(False, f"{type(exc).__name__}: {exc}")


def as_gate(value: Gate | Callable[[], bool], field: str = "gates") -> Gate:
    """``value`` as a gate: a gate as it is, a callable wrapped in a
    ``CallableGate`` named after it. Anything else raises ``ConfigError``
    naming ``field``, before anything is sent to the engine."""
    if isinstance(value, Gate) and not isinstance(value, type):
        if not isinstance(value.name, str) or not value.name:
            raise ConfigError(f"{field}.name", value.name, "a non-empty string")
        _check_ratio(value.min_success_ratio, f"{field}.min_success_ratio")
        if not callable(getattr(value, "sample", None)):
            raise ConfigError(field, value, _GATE_ALLOWED)
        return value
    _check_callable(field, value)
    name = getattr(value, "__name__", None)
    return CallableGate(value, name=name if isinstance(name, str) and name else "check")


def as_gates(values: object, field: str = "gates") -> tuple[Gate, ...]:
    """A sequence of gates (see ``as_gate``); a single gate, a string or a
    mapping is refused rather than iterated."""
    if (
        isinstance(values, str | bytes | Mapping | Gate)
        or callable(values)
        or not isinstance(values, Iterable)
    ):
        raise ConfigError(field, values, "a list of gates, e.g. [HttpGate(url)]")
    return tuple(as_gate(value, f"{field}[{i}]") for i, value in enumerate(values))


def parse_http_gate(spec: str, option: str = "--gate-http") -> HttpGate:
    """``URL[,status=200][,ratio=1.0][,timeout=2]``; errors name ``option``."""
    url, *rest = spec.split(",")
    given: dict[str, str] = {}
    for item in rest:
        key, sep, value = item.partition("=")
        if not sep or key not in ("status", "ratio", "timeout"):
            raise ConfigError(option, spec, "URL[,status=CODE][,ratio=0..1][,timeout=SECONDS]")
        given[key] = value
    try:
        status = int(given.get("status", 200))
        ratio, timeout = float(given.get("ratio", 1.0)), float(given.get("timeout", 2.0))
    except ValueError:
        raise ConfigError(option, spec, "status=, ratio= and timeout= take numbers") from None
    return HttpGate(url, expect_status=status, min_success_ratio=ratio, timeout=timeout)


def parse_tcp_gate(spec: str, option: str = "--gate-tcp") -> TcpGate:
    """``HOST:PORT``; errors name ``option``."""
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(option, spec, "HOST:PORT")
    return TcpGate(host, int(port))
