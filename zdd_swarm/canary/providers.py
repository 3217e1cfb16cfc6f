"""Metric providers: Prometheus' HTTP API and any JSON endpoint.

The one place ``requests`` is used for analysis: its errors and the
providers' refusals become ``MeasurementFailed`` here (a measurement
error, never a pass), and ``MetricQueryError`` when ``check_metrics`` asks
before the rollout starts. Queries and URLs are templated with
``{service}``, ``{old_image}``, ``{new_image}``, ``{old_tag}`` and
``{new_tag}``; nothing else in them is touched, so PromQL's own braces stay as written.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests

from ..errors import ConfigError
from ..gates import Gate, as_gate
from .analysis import MeasurementFailed, QueryContext

__all__ = ["GateProvider", "PrometheusProvider", "WebProvider", "parse_json_path"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_KNOWN = ("service", "old_image", "new_image", "old_tag", "new_tag")
_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[['\"]([^'\"]+)['\"]\]")


class HttpSession(Protocol):
    """What the providers need of ``requests.Session`` (tests pass a fake)."""

    def get(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None = ...,
        headers: Mapping[str, str] | None = ...,
        timeout: float = ...,
    ) -> requests.Response: ...


def _template(field_name: str, text: str) -> str:
    """``text`` checked: every ``{name}`` in it is one we fill in."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(field_name, text, "a non-empty string")
    for match in _PLACEHOLDER.finditer(text):
        if match.group(1) not in _KNOWN:
            allowed = ", ".join("{" + k + "}" for k in _KNOWN)
            raise ConfigError(field_name, match.group(0), f"a placeholder among {allowed}")
    return text


def _fill(text: str, values: Mapping[str, str], quote: Any) -> str:
    return _PLACEHOLDER.sub(
        lambda m: quote(values[m.group(1)]) if m.group(1) in values else m.group(0), text
    )


def _promql_string(value: str) -> str:
    """A value inside a PromQL double-quoted string: backslash and quote escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _url(field_name: str, value: str) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ConfigError(field_name, value, "an http:// or https:// URL")
    return value.rstrip("/") if field_name.endswith("address") else value


def _get(
    session: HttpSession | None,
    url: str,
    timeout: float,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> requests.Response:
    getter = session if session is not None else requests
    try:
        return getter.get(url, params=params, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise MeasurementFailed(f"{url} unreachable: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class PrometheusProvider:
    """An instant query to Prometheus' ``/api/v1/query``.

    The result is what a condition sees as ``result``: a vector is the list
    of its sample values (``result[0]``), a scalar a number, a matrix a list
    of lists of values, as Argo Rollouts' prometheus provider gives them.
    Prometheus' ``NaN`` is ``float('nan')`` (test it with ``isNaN``).
    """

    address: str
    query: str
    timeout: float = 5.0
    session: HttpSession | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", _url("prometheus.address", self.address))
        _template("prometheus.query", self.query)
        if isinstance(self.timeout, bool) or not (
            isinstance(self.timeout, int | float) and self.timeout > 0
        ):
            raise ConfigError("prometheus.timeout", self.timeout, "a number of seconds > 0")

    def render(self, context: QueryContext) -> str:
        """The query with the context's placeholders filled in."""
        return _fill(self.query, context.values(), _promql_string)

    def measure(self, context: QueryContext) -> Any:
        query = self.render(context)
        url = f"{self.address}/api/v1/query"
        response = _get(self.session, url, self.timeout, params={"query": query})
        try:
            body = response.json()
        except ValueError:
            raise MeasurementFailed(
                f"{url} answered HTTP {response.status_code} without Prometheus' JSON"
            ) from None
        if not isinstance(body, Mapping) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, Mapping) else None
            kind = body.get("errorType") if isinstance(body, Mapping) else None
            raise MeasurementFailed(
                f"Prometheus refused the query {query!r} (HTTP {response.status_code}, "
                f"{kind or 'no error type'}): {error or response.text[:200]}"
            )
        return _prometheus_result(body.get("data"))


def _sample(pair: Any) -> float:
    """A sample ``[timestamp, "value"]`` as a float (``"NaN"``, ``"+Inf"`` too)."""
    try:
        return float(pair[1])
    except (TypeError, ValueError, IndexError, KeyError):
        raise MeasurementFailed(
            f"Prometheus sent a sample that is not a number: {pair!r}"
        ) from None


def _prometheus_result(data: Any) -> Any:
    if not isinstance(data, Mapping):
        raise MeasurementFailed(f"Prometheus sent no data: {data!r}")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "vector" and isinstance(result, list):
        return [_sample(item.get("value")) for item in result]
    if kind == "scalar":
        return _sample(result)
    if kind == "matrix" and isinstance(result, list):
        return [[_sample(pair) for pair in item.get("values") or []] for item in result]
    if kind == "string" and isinstance(result, list) and len(result) == 2:
        return str(result[1])
    raise MeasurementFailed(f"Prometheus sent a result of type {kind!r}: {result!r}")


def parse_json_path(path: str) -> tuple[str | int, ...]:
    """``$.a.b[0]`` (or ``a.b[0]``, ``$["a-b"]``, ``$``) as keys and indexes;
    a path that does not parse raises ``ConfigError``."""
    if not isinstance(path, str):
        raise ConfigError("web.json_path", path, "a path such as '$.data.errors[0]'")
    text = path.strip()
    text = text[1:] if text.startswith("$") else "." + text if text else text
    parts: list[str | int] = []
    position = 0
    while position < len(text):
        match = _PATH_PART.match(text, position)
        if match is None:
            raise ConfigError("web.json_path", path, "a path such as '$.data.errors[0]'")
        name, index, quoted = match.groups()
        parts.append(int(index) if index is not None else name or quoted)
        position = match.end()
    return tuple(parts)


@dataclass(frozen=True)
class WebProvider:
    """GET ``url`` (templated, values URL-encoded); the value at ``json_path``
    of the JSON answer is the result (the whole answer with ``$``)."""

    url: str
    json_path: str = "$"
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 5.0
    session: HttpSession | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _url("web.url", self.url)
        _template("web.url", self.url)
        parse_json_path(self.json_path)
        if isinstance(self.timeout, bool) or not (
            isinstance(self.timeout, int | float) and self.timeout > 0
        ):
            raise ConfigError("web.timeout", self.timeout, "a number of seconds > 0")

    def measure(self, context: QueryContext) -> Any:
        url = _fill(self.url, context.values(), lambda v: urllib.parse.quote(v, safe=""))
        response = _get(self.session, url, self.timeout, headers=dict(self.headers))
        if not 200 <= response.status_code < 300:
            raise MeasurementFailed(f"{url} answered HTTP {response.status_code}")
        try:
            value: Any = response.json()
        except ValueError:
            raise MeasurementFailed(f"{url} did not answer JSON") from None
        for part in parse_json_path(self.json_path):
            found = (isinstance(part, int) and isinstance(value, list) and part < len(value)) or (
                isinstance(part, str) and isinstance(value, Mapping) and part in value
            )
            if found:
                value = value[part]
            else:
                raise MeasurementFailed(f"{url}: no {self.json_path} in the answer")
        return value


@dataclass(frozen=True)
class GateProvider:
    """One of the rolling update's gates (``HttpGate``, ``TcpGate``,
    ``CallableGate``, a callable returning a bool) as a metric: each sample
    is a measurement, 1 when it passes and 0 when it does not (the
    analysis' ``count`` and ``failure_limit`` then play the part of the
    gate's ``min_success_ratio``). A gate that raises is a measurement
    error."""

    gate: Gate | Callable[[], bool]

    def __post_init__(self) -> None:
        object.__setattr__(self, "gate", as_gate(self.gate, "gate"))

    def measure(self, context: QueryContext) -> Any:
        gate = as_gate(self.gate, "gate")
        try:
            sample = gate.sample()
        except Exception as exc:
            raise MeasurementFailed(f"gate {gate.name}: {exc}") from exc
        return 1 if sample.ok else 0
