"""A canary as written in a file: its steps and the analyses they name.

The same mapping is read from a canary file (``--steps-file``) and from a
compose service's ``x-zdd-swarm`` extension::

    x-zdd-swarm:
      analyses:
        errors:                       # what 'analysis=errors' runs
          - name: error-ratio
            prometheus:
              address: http://prometheus:9090
              query: sum(rate(http_requests_total{code=~"5..",image="{new_image}"}[1m]))
                / sum(rate(http_requests_total{image="{new_image}"}[1m]))
            success_condition: result[0] < 0.05
            interval: 30s
            count: 4
            failure_limit: 1
      steps: [10%, analysis=errors, 50%, pause, 100%]

Metric keys are ``Metric``'s fields; Argo Rollouts' camelCase names
(``successCondition``, ``failureLimit``, ``consecutiveErrorLimit``,
``consecutiveSuccessLimit``, ``initialDelay``, ``dryRun``, ``jsonPath``)
and its ``{metrics: [...]}`` template form are accepted too. Errors name
the key, e.g. ``x-zdd-swarm.analyses.errors[0].prometheus.query``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, StepError
from ..gates import parse_http_gate, parse_tcp_gate
from .analysis import Metric, MetricProvider, QueryContext, check_metrics
from .providers import GateProvider, PrometheusProvider, WebProvider
from .steps import Step, steps_from_data, validate_steps

__all__ = [
    "EXTENSION",
    "CanarySpec",
    "canary_from_compose",
    "canary_from_data",
    "load_analysis",
    "load_canary_file",
]

EXTENSION = "x-zdd-swarm"
"""The compose extension of a service that holds its canary."""

_ALIASES = {
    "successCondition": "success_condition",
    "failureCondition": "failure_condition",
    "failureLimit": "failure_limit",
    "inconclusiveLimit": "inconclusive_limit",
    "consecutiveErrorLimit": "consecutive_error_limit",
    "consecutiveSuccessLimit": "consecutive_successes",
    "initialDelay": "initial_delay",
    "dryRun": "dry_run",
}
_METRIC_KEYS = {
    "name",
    "success_condition",
    "failure_condition",
    "interval",
    "count",
    "failure_limit",
    "inconclusive_limit",
    "consecutive_error_limit",
    "consecutive_successes",
    "initial_delay",
    "dry_run",
}
_PROVIDERS = ("prometheus", "web", "gate")


@dataclass(frozen=True)
class CanarySpec:
    """Steps, and the analyses (name -> metrics) they may run."""

    steps: tuple[Step, ...]
    analyses: Mapping[str, tuple[Metric, ...]] = field(default_factory=dict)
    source: Mapping[str, Any] | None = field(default=None, compare=False)
    """The mapping it was read from (``steps:``, ``analyses:``), if any: a
    canary's record keeps it, so that ``watch`` can finish the canary."""

    def check(self, replicas: int, context: QueryContext) -> None:
        """What a canary checks before it sends anything: the steps against
        the service's ``replicas`` and the analyses they name, and a first
        measurement of every metric (a query Prometheus refuses, a provider
        it cannot reach). Raises an ``InputError``."""
        validate_steps(self.steps, self.analyses, replicas)
        check_metrics([m for ms in self.analyses.values() for m in ms], context)


def _gate(where: str, settings: Mapping[str, Any]) -> GateProvider:
    """``gate: {http: "URL[,status=N][,timeout=S]"}`` or ``{tcp: HOST:PORT}``,
    as ``--gate-http`` and ``--gate-tcp`` take them."""
    if len(settings) != 1 or not isinstance(next(iter(settings.values())), str):
        raise ConfigError(f"{where}.gate", dict(settings), "{http: URL} or {tcp: HOST:PORT}")
    kind, spec = next(iter(settings.items()))
    if kind not in ("http", "tcp"):
        raise ConfigError(f"{where}.gate", dict(settings), "{http: URL} or {tcp: HOST:PORT}")
    option = f"{where}.gate.{kind}"
    try:
        gate = parse_http_gate(spec, option) if kind == "http" else parse_tcp_gate(spec, option)
        return GateProvider(gate)
    except ConfigError as exc:
        raise ConfigError(f"{where}.gate.{kind}", spec, exc.allowed) from exc


def _provider(where: str, kind: str, data: object) -> MetricProvider:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}.{kind}", data, "a mapping of the provider's settings")
    settings = dict(data)
    if kind == "gate":
        return _gate(where, settings)
    if kind == "web":
        if "jsonPath" in settings:
            settings["json_path"] = settings.pop("jsonPath")
        headers = settings.get("headers")
        if isinstance(headers, list):  # Argo: [{key: K, value: V}]
            settings["headers"] = {h.get("key"): h.get("value") for h in headers}
    cls: Any = PrometheusProvider if kind == "prometheus" else WebProvider
    try:
        provider: MetricProvider = cls(**settings)
    except TypeError:
        allowed = (
            "address, query, timeout"
            if kind == "prometheus"
            else "url, json_path, headers, timeout"
        )
        raise ConfigError(f"{where}.{kind}", sorted(settings), f"keys among {allowed}") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc.field}", exc.value, exc.allowed) from exc
    return provider


def _metric(where: str, data: object, default_name: str | None) -> Metric:
    if not isinstance(data, Mapping):
        raise ConfigError(where, data, "a metric: a mapping with prometheus:, web: or gate:")
    settings = {_ALIASES.get(str(k), str(k)): v for k, v in data.items()}
    kinds = [k for k in _PROVIDERS if k in settings]
    if len(kinds) != 1:
        raise ConfigError(where, sorted(settings), "exactly one provider: prometheus, web or gate")
    provider = _provider(where, kinds[0], settings.pop(kinds[0]))
    if kinds[0] == "gate" and "success_condition" not in settings:
        settings.setdefault("failure_condition", "result == 0")  # a sample that did not pass
    unknown = sorted(set(settings) - _METRIC_KEYS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", settings[unknown[0]], "a metric setting")
    settings.setdefault("name", default_name)
    if not settings["name"]:
        raise ConfigError(f"{where}.name", None, "a name (the analysis has several metrics)")
    try:
        return Metric(provider=provider, **settings)
    except ConfigError as exc:
        field_name = exc.field.rpartition(".")[2] if exc.field.startswith("metrics.") else exc.field
        raise ConfigError(f"{where}.{field_name}", exc.value, exc.allowed) from exc


def _analysis(where: str, name: str, data: object) -> tuple[Metric, ...]:
    if isinstance(data, Mapping) and set(data) == {"metrics"}:  # Argo's template form
        data = data["metrics"]
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, Sequence) or isinstance(data, str) or not data:
        raise ConfigError(f"{where}.{name}", data, "a list of metrics")
    default = name if len(data) == 1 else None
    metrics = tuple(_metric(f"{where}.{name}[{i}]", m, default) for i, m in enumerate(data))
    names = [m.name for m in metrics]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}.{name}", names, "metrics with distinct names")
    return metrics


def canary_from_data(data: object, where: str = "canary") -> CanarySpec:
    """A canary from its mapping (``steps:``, ``analyses:``), or a bare list of steps."""
    if isinstance(data, Sequence) and not isinstance(data, str):
        data = {"steps": data}
    if not isinstance(data, Mapping):
        raise ConfigError(where, data, "a mapping with steps (and analyses)")
    for key in data:
        if key not in ("steps", "analyses"):
            raise ConfigError(f"{where}.{key}", data[key], "one of: steps, analyses")
    raw = data.get("analyses")
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}.analyses", raw, "a mapping of analysis name to metrics")
    analyses = {str(n): _analysis(f"{where}.analyses", str(n), m) for n, m in raw.items()}
    try:
        steps = steps_from_data(data.get("steps"), analyses)
    except StepError as exc:
        raise StepError(
            exc.index, exc.step_field, exc.value, exc.allowed, f"{where}.steps"
        ) from exc
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc.field}", exc.value, exc.allowed) from exc
    return CanarySpec(steps, analyses, {"steps": list(data.get("steps") or ()), "analyses": raw})


def canary_from_compose(service: Mapping[str, Any], where: str = EXTENSION) -> CanarySpec | None:
    """The canary of a compose service entry's ``x-zdd-swarm`` extension
    (its ``steps`` and ``analyses``; a stack's ``wave`` is not the canary's),
    or None when it has none. The compose specification allows ``x-`` fields
    in a service, and ``docker stack deploy`` ignores them."""
    extension = service.get(EXTENSION)
    if extension is None:
        return None
    if isinstance(extension, Mapping):
        extension = {k: v for k, v in extension.items() if k != "wave"}
        if not extension:
            return None
    return canary_from_data(extension, where)


def _read_yaml(path: str | Path, where: str) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(where, str(path), f"a readable file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        message = f"a YAML file ({exc})".replace("\n", " ")
        raise ConfigError(where, str(path), message) from exc


def load_canary_file(path: str | Path) -> CanarySpec:
    """A canary from a YAML file: a list of steps, or ``steps:`` and ``analyses:``."""
    return canary_from_data(_read_yaml(path, "steps file"), "steps file")


def load_analysis(spec: str, where: str = "analysis file") -> tuple[Metric, ...]:
    """The metrics of one analysis of a file, given as ``FILE[:NAME]``: the
    file's ``analyses:`` as in a canary file (its ``steps:``, if any, are not
    read); without NAME, the file's only analysis."""
    path, name = spec, None
    if not Path(spec).is_file() and ":" in spec:
        path, _, name = spec.rpartition(":")
    data = _read_yaml(path, where)
    raw = data.get("analyses") if isinstance(data, Mapping) else None
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(where, path, "a file with analyses: (a mapping of name to metrics)")
    by_name = {str(n): metrics for n, metrics in raw.items()}
    names = list(by_name)
    if not name and len(names) != 1:
        raise ConfigError(where, spec, f"FILE:NAME, NAME one of: {', '.join(names)}")
    name = name or names[0]
    if name not in names:
        raise ConfigError(where, spec, f"an analysis of the file: {', '.join(names)}")
    return _analysis(f"{where}.analyses", name, by_name[name])
