"""Gates: checks of our own, run while a batch is in its monitor window.

A gate is sampled repeatedly from the moment all tasks of a batch are
RUNNING until the window (the update config's ``monitor``) ends; the batch
passes if the share of successful samples reaches ``min_success_ratio``.
Any callable returning a bool (or raising) can be a gate.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .errors import ConfigError

__all__ = ["CallableGate", "Gate", "GateSample", "HttpGate", "TcpGate", "as_gate"]


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


def _check_ratio(value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError("min_success_ratio", value, "a number between 0 and 1")


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
        _check_ratio(self.min_success_ratio)

    def sample(self) -> GateSample:
        try:
            return GateSample(bool(self.check()))
        except Exception as exc:
            return GateSample(False, f"{type(exc).__name__}: {exc}")


def as_gate(value: Gate | Callable[[], bool]) -> Gate:
    if isinstance(value, Gate):
        return value
    return CallableGate(value, name=getattr(value, "__name__", "check"))
