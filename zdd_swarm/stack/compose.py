"""Compose files to a stack: load, interpolate, merge, convert (no I/O on the engine).

A named subset of the compose file format is supported (``SUPPORTED`` and
docs/stacks.md); any other key is refused by name (``UnsupportedKey``), never
dropped. Names, labels and the conversion follow the docker CLI's
``cli/compose/convert`` so that a stack deployed by either tool can be
handled by the other; the lines followed are quoted where they are applied.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..canary.spec import CanarySpec, canary_from_compose
from ..config import RollbackConfig, UpdateConfig, parse_duration, to_nanoseconds
from ..errors import ConfigError, InputError

__all__ = [
    "LABEL_IMAGE",
    "LABEL_NAMESPACE",
    "ComposeError",
    "ObjectSpec",
    "StackSpec",
    "UnsupportedKey",
    "interpolate",
    "load_stack",
]

# cli/compose/convert/compose.go: LabelNamespace = "com.docker.stack.namespace"
LABEL_NAMESPACE = "com.docker.stack.namespace"
# cli/compose/convert/service.go: LabelImage = "com.docker.stack.image"
LABEL_IMAGE = "com.docker.stack.image"

SUPPORTED: dict[str, frozenset[str]] = {
    "top": frozenset({"version", "name", "services", "networks", "secrets", "configs"}),
    "service": frozenset(
        {
            "image",
            "command",
            "entrypoint",
            "environment",
            "env_file",
            "labels",
            "deploy",
            "healthcheck",
            "networks",
            "secrets",
            "configs",
            "depends_on",
            "stop_grace_period",
            "stop_signal",
            "working_dir",
            "user",
            "hostname",
            "init",
            "read_only",
            "tty",
            "ports",
        }
    ),
    "deploy": frozenset(
        {
            "mode",
            "replicas",
            "labels",
            "update_config",
            "rollback_config",
            "restart_policy",
            "placement",
            "endpoint_mode",
            "resources",
        }
    ),
    "placement": frozenset({"constraints", "preferences", "max_replicas_per_node"}),
    "restart_policy": frozenset({"condition", "delay", "max_attempts", "window"}),
    "resources": frozenset({"limits", "reservations"}),
    "limits": frozenset({"cpus", "memory", "pids"}),
    "reservations": frozenset({"cpus", "memory"}),
    "healthcheck": frozenset(
        {"test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"}
    ),
    "network": frozenset(
        {"driver", "driver_opts", "attachable", "internal", "labels", "external", "name"}
    ),
    "secret": frozenset({"file", "external", "name", "labels"}),
    "config": frozenset({"file", "external", "name", "labels"}),
    "service_network": frozenset({"aliases"}),
    "file_reference": frozenset({"source", "target", "uid", "gid", "mode"}),
    "x-zdd-swarm": frozenset({"wave", "steps", "analyses"}),
}

# Docker's service names: the engine's ``names.go`` pattern; the CLI's
# loader checks compose service names with the same shape.
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


class ComposeError(InputError):
    """A compose file that cannot be used: where, and why."""


class UnsupportedKey(ComposeError):
    """A compose key outside the supported subset (refused, never dropped)."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"compose key {path!r} is not supported by zdd-swarm stack deploy "
            "(see docs/stacks.md for the supported keys)"
        )


@dataclass(frozen=True)
class ObjectSpec:
    """A network, secret or config the stack creates (``data`` for the last two)."""

    kind: str
    key: str
    """its key in the compose file"""
    name: str
    """its name on the swarm (``STACK_key`` unless ``name:`` is given)"""
    labels: Mapping[str, str]
    external: bool = False
    data: bytes = field(default=b"", repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"Name": self.name, "Labels": dict(self.labels)}
        if self.kind == "network":
            spec.update(self.options)
        else:
            spec["Data"] = self.data
        return spec


@dataclass(frozen=True)
class StackSpec:
    """A stack as the engine will get it: service specs in Engine API form
    (network, secret and config references by name, resolved to ids at
    deploy time), the objects, and the waves."""

    name: str
    services: Mapping[str, dict[str, Any]]
    """compose service name -> service spec"""
    objects: Sequence[ObjectSpec]
    waves: Sequence[Sequence[str]]
    """compose service names, wave by wave"""
    canaries: Mapping[str, CanarySpec] = field(default_factory=dict)
    """compose service name -> its canary (``x-zdd-swarm`` steps and analyses)"""

    def scoped(self, key: str) -> str:
        return f"{self.name}_{key}"


# -- loading ---------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; ``#`` comments and blank lines skipped."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ComposeError(f"cannot read {path}: {exc.strerror or exc}") from exc
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not key or " " in key:
            raise ComposeError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        if not sep:
            if key in os.environ:
                values[key] = os.environ[key]
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def load_stack(
    files: Sequence[str | Path],
    stack: str,
    *,
    environment: Mapping[str, str] | None = None,
) -> StackSpec:
    """Read, interpolate, merge and convert compose ``files`` into ``stack``.

    ``environment`` defaults to ``os.environ``; a ``.env`` file next to the
    first file fills what the environment does not set, as the docker CLI
    does. Raises ``ComposeError`` (an ``InputError``) on anything it cannot
    use; nothing is sent to an engine.
    """
    if not _NAME.match(stack):
        raise ConfigError("stack", stack, "letters, digits, '_', '.', '-', starting alphanumeric")
    if not files:
        raise ComposeError("no compose file given (-c FILE)")
    paths = [Path(f) for f in files]
    env: dict[str, str] = {}
    dotenv = paths[0].parent / ".env"
    if dotenv.is_file():
        env.update(read_env_file(dotenv))
    env.update(os.environ if environment is None else environment)
    merged: dict[str, Any] = {}
    for path in paths:
        data = _read_yaml(path)
        data = interpolate(data, env, str(path))
        data = _resolve_paths(data, path.parent)
        _check_keys(data, str(path))
        merged = _merge(merged, data) if merged else data
    return _convert(merged, stack)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ComposeError(f"compose file {str(path)!r} not found") from exc
    except OSError as exc:
        raise ComposeError(f"cannot read compose file {str(path)!r}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        raise ComposeError(f"{path}: YAML error at {where}: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise ComposeError(f"{path}: YAML error: {exc}") from exc
    if not isinstance(data, dict):
        raise ComposeError(f"{path}: a compose file is a mapping (services:, networks:, ...)")
    return data


# -- interpolation ---------------------------------------------------------------

# cli/compose/template/template.go:
#   delimiter = "\\$"
#   subst     = "[_a-z][_a-z0-9]*(?::?[-?][^}]*)?"
# (compiled case-insensitively), with "$$" an escaped "$".
_TEMPLATE = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<named>[_a-z][_a-z0-9]*)"
    r"|\{(?P<braced>[_a-z][_a-z0-9]*(?::?[-?][^}]*)?)\}|(?P<invalid>))",
    re.IGNORECASE,
)


def interpolate(data: Any, env: Mapping[str, str], where: str = "compose file") -> Any:
    """Substitute ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``, ``${VAR?error}`` and ``$$`` in every string value.

    A variable that is not set and has no default is an error here (the
    docker CLI warns and substitutes an empty string): a release built on a
    forgotten variable is stopped before anything changes.
    """
    if isinstance(data, dict):
        return {k: interpolate(v, env, f"{where}: {k}") for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate(v, env, where) for v in data]
    if not isinstance(data, str):
        return data

    def substitute(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("invalid") is not None:
            raise ComposeError(f"{where}: invalid template {data!r}")
        text = match.group("named") or match.group("braced")
        # template.go: softDefault ":-", hardDefault "-", requiredNonEmpty ":?", required "?"
        for sep in (":-", ":?", "-", "?"):
            name, found, rest = text.partition(sep)
            if found and re.fullmatch(r"[_a-z][_a-z0-9]*", name, re.IGNORECASE):
                value = env.get(name)
                empty_too = sep.startswith(":")
                missing = value is None or (empty_too and value == "")
                if sep.endswith("-"):
                    return rest if missing else str(value)
                if missing:
                    raise ComposeError(
                        f"{where}: required variable {name} is missing a value: {rest}"
                    )
                return str(value)
        if text not in env:
            raise ComposeError(
                f"{where}: variable {text} is not set and has no default "
                f"(set it, or write ${{{text}:-default}})"
            )
        return env[text]

    return _TEMPLATE.sub(substitute, data)


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative ``file:`` and ``env_file`` paths are relative to their compose file."""
    for kind in ("secrets", "configs"):
        for entry in (data.get(kind) or {}).values():
            if isinstance(entry, dict) and isinstance(entry.get("file"), str):
                entry["file"] = str(base / entry["file"])
    for service in (data.get("services") or {}).values():
        if isinstance(service, dict) and "env_file" in service:
            files = service["env_file"]
            files = [files] if isinstance(files, str) else files
            service["env_file"] = [str(base / f) for f in files]
    return data


# -- keys ------------------------------------------------------------------------


def _check_keys(data: Mapping[str, Any], where: str) -> None:
    def check(entry: Any, allowed: frozenset[str], path: str) -> None:
        if entry is None:
            return
        if not isinstance(entry, dict):
            raise ComposeError(f"{where}: {path} must be a mapping")
        for key in entry:
            if str(key).startswith("x-") and key != "x-zdd-swarm":
                continue
            if key not in allowed:
                raise UnsupportedKey(f"{path}.{key}" if path else str(key))

    check(data, SUPPORTED["top"], "")
    for name, service in (data.get("services") or {}).items():
        path = f"services.{name}"
        if not _NAME.match(str(name)):
            raise ComposeError(
                f"{where}: invalid service name {name!r}: letters, digits, '_', '.', '-', "
                "starting with a letter or digit"
            )
        check(service, SUPPORTED["service"] | {"x-zdd-swarm"}, path)
        if not isinstance(service, dict):
            continue
        check(service.get("x-zdd-swarm"), SUPPORTED["x-zdd-swarm"], f"{path}.x-zdd-swarm")
        check(service.get("healthcheck"), SUPPORTED["healthcheck"], f"{path}.healthcheck")
        deploy = service.get("deploy")
        check(deploy, SUPPORTED["deploy"], f"{path}.deploy")
        if isinstance(deploy, dict):
            for sub in ("placement", "restart_policy", "resources"):
                check(deploy.get(sub), SUPPORTED[sub], f"{path}.deploy.{sub}")
            resources = deploy.get("resources") or {}
            for sub in ("limits", "reservations"):
                check(resources.get(sub), SUPPORTED[sub], f"{path}.deploy.resources.{sub}")
        networks = service.get("networks")
        if isinstance(networks, dict):
            for net, conf in networks.items():
                check(conf, SUPPORTED["service_network"], f"{path}.networks.{net}")
        for kind in ("secrets", "configs"):
            for ref in service.get(kind) or []:
                if isinstance(ref, dict):
                    check(ref, SUPPORTED["file_reference"], f"{path}.{kind}[]")
    for kind, allowed in (("networks", "network"), ("secrets", "secret"), ("configs", "config")):
        for name, entry in (data.get(kind) or {}).items():
            check(entry, SUPPORTED[allowed], f"{kind}.{name}")


# -- merging ---------------------------------------------------------------------


def _by_key(items: Sequence[Any], key: str) -> dict[Any, Any]:
    return {(i.get(key) if isinstance(i, dict) else i): i for i in items}


def _merge_service(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """cli/compose/loader/merge.go ``mergeServices``: "mergo.WithAppendSlice,
    mergo.WithOverride" with special cases: secrets and configs merged by
    ``Source``, ports by ``Published``, ``ShellCommand`` (command,
    entrypoint) replaced, networks merged by name; maps merge key by key."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        old = result.get(key)
        if key in ("command", "entrypoint") or old is None:
            result[key] = copy.deepcopy(value)
        elif key in ("environment", "labels"):
            result[key] = {**_as_map(old), **_as_map(value)}
        elif key in ("secrets", "configs") and isinstance(value, list):
            merged = _by_key(old, "source")
            merged.update(_by_key(value, "source"))
            result[key] = list(merged.values())
        elif key == "networks":
            result[key] = {**_network_map(old), **_network_map(value)}
        elif isinstance(old, dict) and isinstance(value, dict):
            result[key] = _merge_service(old, value)
        elif isinstance(old, list) and isinstance(value, list):
            result[key] = old + list(value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    services = dict(result.get("services") or {})
    for name, service in (override.get("services") or {}).items():
        if name in services and isinstance(service, dict):
            services[name] = _merge_service(services[name], service)
        else:
            services[name] = copy.deepcopy(service)
    result["services"] = services
    # merge.go: "mergo.Map(&base.Networks, &override.Networks, mergo.WithOverride)"
    # (likewise secrets and configs): an entry of the override replaces the base's
    for kind in ("networks", "secrets", "configs"):
        if kind in override:
            result[kind] = {**(result.get(kind) or {}), **(override.get(kind) or {})}
    for key, value in override.items():
        if key not in ("services", "networks", "secrets", "configs"):
            result[key] = copy.deepcopy(value)
    return result


def _as_map(value: Any) -> dict[str, str | None]:
    if isinstance(value, dict):
        return {str(k): None if v is None else _scalar(v) for k, v in value.items()}
    result: dict[str, str | None] = {}
    for item in value or []:
        key, sep, val = str(item).partition("=")
        result[key] = val if sep else None
    return result


def _network_map(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    return {str(n): None for n in value or []}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- conversion --------------------------------------------------------------------


def _ns(value: Any, field: str) -> int:
    return to_nanoseconds(parse_duration(value, field))


def _convert(data: Mapping[str, Any], stack: str) -> StackSpec:
    services = data.get("services") or {}
    if not services:
        raise ComposeError("the compose files define no services")
    objects = _objects(data, stack)
    names = {(o.kind, o.key): o.name for o in objects}
    specs = {
        name: _service(stack, name, entry or {}, names, data) for name, entry in services.items()
    }
    used_networks = {
        net for entry in services.values() for net in _network_map((entry or {}).get("networks"))
    } or set()
    if any(not (entry or {}).get("networks") for entry in services.values()):
        used_networks.add("default")
    objects = [o for o in objects if o.kind != "network" or o.key in used_networks]
    if "default" in used_networks and ("network", "default") not in names:
        objects.append(
            ObjectSpec(
                "network",
                "default",
                f"{stack}_default",
                {LABEL_NAMESPACE: stack},
                options={"Driver": "overlay"},
            )
        )
    canaries = {
        name: canary_from_compose(entry or {}, f"services.{name}.x-zdd-swarm")
        for name, entry in services.items()
    }
    return StackSpec(
        stack, specs, objects, _waves(services), {k: c for k, c in canaries.items() if c}
    )


def _objects(data: Mapping[str, Any], stack: str) -> list[ObjectSpec]:
    objects: list[ObjectSpec] = []
    for kind, plural in (("network", "networks"), ("secret", "secrets"), ("config", "configs")):
        for key, entry in (data.get(plural) or {}).items():
            entry = entry or {}
            external = entry.get("external")
            external = bool(external) if not isinstance(external, dict) else True
            name = str(entry.get("name") or (key if external else f"{stack}_{key}"))
            labels = {**_as_map(entry.get("labels")), LABEL_NAMESPACE: stack}
            if kind == "network":
                # deploy_composefile.go createNetworks: "if createOpts.Driver ==
                # "" { createOpts.Driver = defaultNetworkDriver }" (overlay)
                options: dict[str, Any] = {"Driver": entry.get("driver") or "overlay"}
                if entry.get("driver_opts"):
                    options["Options"] = _as_map(entry["driver_opts"])
                options["Attachable"] = bool(entry.get("attachable"))
                options["Internal"] = bool(entry.get("internal"))
                objects.append(
                    ObjectSpec(kind, key, name, _str_map(labels), external, options=options)
                )
                continue
            payload = b""
            if not external:
                if "file" not in entry:
                    raise ComposeError(f"{plural}.{key}: 'file' or 'external' is needed")
                try:
                    payload = Path(entry["file"]).read_bytes()
                except OSError as exc:
                    raise ComposeError(
                        f"{plural}.{key}: cannot read {entry['file']}: {exc.strerror}"
                    ) from exc
            objects.append(ObjectSpec(kind, key, name, _str_map(labels), external, payload))
    return objects


def _str_map(values: Mapping[str, str | None]) -> dict[str, str]:
    return {k: "" if v is None else v for k, v in values.items()}


def _command(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def _service(
    stack: str,
    name: str,
    entry: Mapping[str, Any],
    names: Mapping[tuple[str, str], str],
    data: Mapping[str, Any],
) -> dict[str, Any]:
    """cli/compose/convert/service.go ``Service``, for the supported keys."""
    image = entry.get("image")
    if not isinstance(image, str) or not image:
        raise ComposeError(f"services.{name}: 'image' is needed (build is not supported)")
    deploy = entry.get("deploy") or {}
    template: dict[str, Any] = {
        "ContainerSpec": _container(stack, name, image, entry, names),
        "Networks": _task_networks(stack, name, entry.get("networks"), names),
    }
    restart = deploy.get("restart_policy")
    if restart is not None:
        template["RestartPolicy"] = _restart_policy(restart)
    template["Placement"] = _placement(deploy.get("placement") or {})
    template["Resources"] = _resources(deploy.get("resources") or {})
    spec: dict[str, Any] = {
        "Name": f"{stack}_{name}",
        # service.go: "Labels: addStackLabel(namespace, service.Deploy.Labels)"
        # and "serviceSpec.Labels[LabelImage] = service.Image"
        "Labels": _str_map(
            {**_as_map(deploy.get("labels")), LABEL_NAMESPACE: stack, LABEL_IMAGE: image}
        ),
        "TaskTemplate": template,
        "Mode": _mode(name, deploy),
        "EndpointSpec": _endpoint(name, deploy.get("endpoint_mode"), entry.get("ports") or []),
    }
    # service.go convertUpdateConfig: "if source == nil { return nil }", and
    # a missing parallelism is 1
    if deploy.get("update_config") is not None:
        spec["UpdateConfig"] = UpdateConfig.from_compose(deploy["update_config"]).to_api()
    if deploy.get("rollback_config") is not None:
        spec["RollbackConfig"] = RollbackConfig.from_compose(deploy["rollback_config"]).to_api()
    return spec


def _container(
    stack: str,
    name: str,
    image: str,
    entry: Mapping[str, Any],
    names: Mapping[tuple[str, str], str],
) -> dict[str, Any]:
    """service.go ``convertService``'s ContainerSpec."""
    env: dict[str, str | None] = {}
    for env_file in entry.get("env_file") or []:
        env.update(read_env_file(Path(env_file)))
    env.update(_as_map(entry.get("environment")))
    container: dict[str, Any] = {
        "Image": image,
        # service.go: "Labels: addStackLabel(namespace, service.Labels)"
        "Labels": _str_map({**_as_map(entry.get("labels")), LABEL_NAMESPACE: stack}),
        # service.go: "var privileges swarm.Privileges" ... "Privileges: &privileges"
        "Privileges": {"CredentialSpec": None, "SELinuxContext": None, "NoNewPrivileges": False},
    }
    if env:
        # service.go convertEnvironment: "name+"="+*value" ... "sort.Strings(output)"
        container["Env"] = sorted(k if v is None else f"{k}={v}" for k, v in env.items())
    for key, api in (("entrypoint", "Command"), ("command", "Args")):
        value = _command(entry.get(key))
        if value is not None:
            container[api] = value
    for key, api in (
        ("hostname", "Hostname"),
        ("working_dir", "Dir"),
        ("user", "User"),
        ("stop_signal", "StopSignal"),
    ):
        if entry.get(key):
            container[api] = str(entry[key])
    for key, api in (("tty", "TTY"), ("read_only", "ReadOnly")):
        if entry.get(key):
            container[api] = bool(entry[key])
    if entry.get("init") is not None:
        container["Init"] = bool(entry["init"])
    if entry.get("stop_grace_period") is not None:
        container["StopGracePeriod"] = _ns(entry["stop_grace_period"], "stop_grace_period")
    check = entry.get("healthcheck")
    if check is not None:
        container["Healthcheck"] = _healthcheck(name, check)
    for kind in ("secret", "config"):
        refs = _file_refs(name, kind, entry.get(kind + "s") or [], names)
        if refs:
            container[kind.capitalize() + "s"] = refs
    return container


def _file_refs(
    name: str, kind: str, entries: Sequence[Any], names: Mapping[tuple[str, str], str]
) -> list[dict[str, Any]]:
    """service.go ``convertFileObject``: target defaults to the source, uid
    and gid to "0", mode to 0o444; "sort to ensure idempotence"."""
    ref_key, id_key = f"{kind.capitalize()}Name", f"{kind.capitalize()}ID"
    refs = []
    for ref in entries:
        ref = {"source": ref} if isinstance(ref, str) else ref
        source = str(ref.get("source", ""))
        if (kind, source) not in names:
            raise ComposeError(f"services.{name}: undefined {kind} {source!r}")
        mode = ref.get("mode", 0o444)
        file = {
            "Name": str(ref.get("target") or source),
            "UID": str(ref.get("uid") or "0"),
            "GID": str(ref.get("gid") or "0"),
            "Mode": int(mode, 8) if isinstance(mode, str) else int(mode),
        }
        refs.append({"File": file, ref_key: names[(kind, source)], id_key: ""})
    return sorted(refs, key=lambda r: str(r[ref_key]))


def _task_networks(
    stack: str, name: str, value: Any, names: Mapping[tuple[str, str], str]
) -> list[dict[str, Any]]:
    """service.go ``convertServiceNetworks``: "Only add default aliases to
    user defined networks": aliases then the service's own name."""
    networks = []
    for net, conf in (_network_map(value) or {"default": None}).items():
        if ("network", net) not in names and net != "default":
            raise ComposeError(f"services.{name}: undefined network {net!r}")
        aliases = [*((conf or {}).get("aliases") or []), name]
        networks.append(
            {"Target": names.get(("network", net), f"{stack}_{net}"), "Aliases": aliases}
        )
    return sorted(networks, key=lambda n: str(n["Target"]))


def _restart_policy(restart: Mapping[str, Any]) -> dict[str, Any]:
    policy: dict[str, Any] = {"Condition": restart.get("condition", "")}
    if restart.get("delay") is not None:
        policy["Delay"] = _ns(restart["delay"], "restart_policy.delay")
    if restart.get("max_attempts") is not None:
        policy["MaxAttempts"] = int(restart["max_attempts"])
    if restart.get("window") is not None:
        policy["Window"] = _ns(restart["window"], "restart_policy.window")
    return policy


def _placement(placement: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if placement.get("constraints"):
        result["Constraints"] = [str(c) for c in placement["constraints"]]
    if placement.get("preferences"):
        result["Preferences"] = [
            {"Spread": {"SpreadDescriptor": str(p["spread"])}} for p in placement["preferences"]
        ]
    if placement.get("max_replicas_per_node"):
        result["MaxReplicas"] = int(placement["max_replicas_per_node"])
    return result


def _mode(name: str, deploy: Mapping[str, Any]) -> dict[str, Any]:
    mode = deploy.get("mode", "replicated")
    replicas = deploy.get("replicas")
    if mode == "global":
        if replicas is not None:
            raise ComposeError(f"services.{name}: replicas can only be used with replicated mode")
        return {"Global": {}}
    if mode == "replicated":
        return {"Replicated": {"Replicas": 1 if replicas is None else int(replicas)}}
    raise UnsupportedKey(f"services.{name}.deploy.mode: {mode}")


def _healthcheck(name: str, check: Mapping[str, Any]) -> dict[str, Any]:
    if check.get("disable"):
        if check.get("test"):
            raise ComposeError(
                f"services.{name}.healthcheck: test and disable can't be set at the same time"
            )
        return {"Test": ["NONE"]}
    test = check.get("test")
    result: dict[str, Any] = {}
    if test is not None:
        result["Test"] = ["CMD-SHELL", test] if isinstance(test, str) else [str(t) for t in test]
    for key, api in (
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start_period", "StartPeriod"),
        ("start_interval", "StartInterval"),
    ):
        if check.get(key) is not None:
            result[api] = _ns(check[key], f"healthcheck.{key}")
    if check.get("retries") is not None:
        result["Retries"] = int(check["retries"])
    return result


_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _bytes(value: Any, field: str) -> int:
    text = str(value).strip().lower().removesuffix("b") or "0"
    match = re.fullmatch(r"([0-9.]+)\s*([kmg]?)", text)
    if not match:
        raise ConfigError(field, value, "a size such as 512M or 1G")
    return int(float(match.group(1)) * _UNITS[match.group(2) or "b"])


def _resources(source: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, api in (("limits", "Limits"), ("reservations", "Reservations")):
        part = source.get(key)
        if part is None:
            continue
        value: dict[str, Any] = {}
        if part.get("cpus") is not None:
            value["NanoCPUs"] = round(float(part["cpus"]) * 1e9)
        if part.get("memory") is not None:
            value["MemoryBytes"] = _bytes(part["memory"], f"resources.{key}.memory")
        if part.get("pids") is not None:
            value["Pids"] = int(part["pids"])
        result[api] = value
    return result


def _endpoint(name: str, mode: Any, ports: Sequence[Any]) -> dict[str, Any]:
    configs = []
    for port in ports:
        if isinstance(port, dict):
            configs.append(
                {
                    "Protocol": str(port.get("protocol", "tcp")),
                    "TargetPort": int(port["target"]),
                    "PublishedPort": int(port.get("published", 0)),
                    "PublishMode": str(port.get("mode", "ingress")),
                }
            )
            continue
        text, _, protocol = str(port).partition("/")
        published, sep, target = text.rpartition(":")
        if ":" in published or not target.isdigit() or (sep and not published.isdigit()):
            raise UnsupportedKey(f"services.{name}.ports: {port!r} (use PUBLISHED:TARGET[/PROTO])")
        configs.append(
            {
                "Protocol": protocol or "tcp",
                "TargetPort": int(target),
                "PublishedPort": int(published) if sep else 0,
                "PublishMode": "ingress",
            }
        )
    endpoint: dict[str, Any] = {"Mode": str(mode or "vip").lower()}
    if configs:
        endpoint["Ports"] = sorted(
            configs, key=lambda p: (p["PublishedPort"], p["TargetPort"], p["Protocol"])
        )
    return endpoint


def _waves(services: Mapping[str, Any]) -> list[list[str]]:
    """Services in the order of ``depends_on`` (a service rolls in a wave
    after every service it depends on), or ``x-zdd-swarm: {wave: N}``."""
    explicit: dict[str, int] = {}
    deps: dict[str, list[str]] = {}
    for name, entry in services.items():
        entry = entry or {}
        depends = entry.get("depends_on") or []
        deps[name] = [str(d) for d in (depends.keys() if isinstance(depends, dict) else depends)]
        for dep in deps[name]:
            if dep not in services:
                raise ComposeError(f"services.{name}.depends_on: undefined service {dep!r}")
        wave = (entry.get("x-zdd-swarm") or {}).get("wave")
        if wave is not None:
            if not isinstance(wave, int) or isinstance(wave, bool) or wave < 0:
                raise ConfigError(f"services.{name}.x-zdd-swarm.wave", wave, "an integer >= 0")
            explicit[name] = wave
    level: dict[str, int] = {}

    def depth(name: str, seen: tuple[str, ...]) -> int:
        if name in seen:
            raise ComposeError(f"depends_on has a cycle: {' -> '.join((*seen, name))}")
        if name not in level:
            found = max((depth(d, (*seen, name)) + 1 for d in deps[name]), default=0)
            level[name] = explicit.get(name, found)
        return level[name]

    for name in services:
        depth(name, ())
    count = max(level.values()) + 1
    waves = [sorted(n for n in services if level[n] == i) for i in range(count)]
    return [w for w in waves if w]
