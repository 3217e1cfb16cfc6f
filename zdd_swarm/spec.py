"""What a user asks to change, applied to a service spec (pure, no I/O).

docker-py's ``APIClient.update_service`` rebuilds the spec from its keyword
arguments and resets what was not passed (docker/docker-py#1521; the
high-level ``Service.update`` now fetches the current spec first, but still
rebuilds it from a fixed list of fields). Here a
change is applied to a deep copy of the spec the engine returned, so every
field the user did not name is sent back exactly as it was.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import RollbackConfig, UpdateConfig
from .errors import ConfigError, InvalidImageReference
from .model import ResolvedImage

__all__ = [
    "ServiceChange",
    "SpecPatch",
    "diff_service_specs",
    "diff_specs",
    "pin_image",
    "validate_image_reference",
]

#: A general hook: receives a deep copy of the service spec (Engine API form)
#: and either mutates it in place (returning None) or returns a new one.
SpecPatch = Callable[[dict[str, Any]], "dict[str, Any] | None"]

# The reference grammar of distribution/reference (docker/distribution
# reference/regexp.go), as the engine applies it.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"^(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$")
_ENV_KEY = re.compile(r"^[^=\s]+$")


def validate_image_reference(reference: str) -> str:
    """Return ``reference`` if the engine would accept it, else raise."""
    if not reference or reference != reference.strip():
        raise InvalidImageReference(reference, "empty or surrounded by whitespace")
    match = _REFERENCE.match(reference)
    if match is None:
        raise InvalidImageReference(
            reference, "expected [registry/]name[:tag][@digest], name in lower case"
        )
    if len(match.group("name")) > 255:
        raise InvalidImageReference(reference, "repository name longer than 255 characters")
    return reference


def _parse_pairs(field_name: str, items: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    if isinstance(items, Mapping):
        pairs = {str(k): str(v) for k, v in items.items()}
    else:
        pairs = {}
        for item in items:
            key, sep, value = str(item).partition("=")
            if not sep:
                raise ConfigError(field_name, item, "KEY=VALUE")
            pairs[key] = value
    for key in pairs:
        if not _ENV_KEY.match(key):
            raise ConfigError(field_name, key, "a non-empty key without '=' or spaces")
    return pairs


def _check_keys(field_name: str, keys: Sequence[str]) -> tuple[str, ...]:
    for key in keys:
        if not key or "=" in key:
            raise ConfigError(field_name, key, "a key, without '='")
    return tuple(keys)


def pin_image(template: dict[str, Any], image: str, resolved: ResolvedImage) -> None:
    """Pin ``image`` in the task template to the digest the registry gave,
    and set the placement platforms, as the docker CLI does.

    moby client/service_create.go (resolveContainerSpecImage, vendored in
    docker/cli): the platforms replace the spec's only when the registry
    names some::

        if len(imgPlatforms) > 0 { [...]
            taskSpec.Placement.Platforms = imgPlatforms
    """
    template.setdefault("ContainerSpec", {})["Image"] = resolved.pin(image)
    if resolved.platforms:
        placement = dict(template.get("Placement") or {})
        placement["Platforms"] = [p.to_api() for p in resolved.platforms]
        template["Placement"] = placement


@dataclass(frozen=True)
class ServiceChange:
    """The changes a user asks for; everything else in the spec is kept.

    Validated on construction, so bad input fails before the engine is
    contacted. ``env_add`` and the label maps accept a mapping or
    ``KEY=VALUE`` strings (as ``--env-add`` does).
    """

    image: str | None = None
    pin_digest: bool = False
    """Resolve ``image`` to its registry digest and pin it (``name:tag@sha256:...``)."""
    env_add: Mapping[str, str] | Sequence[str] = ()
    env_rm: Sequence[str] = ()
    labels_add: Mapping[str, str] | Sequence[str] = ()
    labels_rm: Sequence[str] = ()
    container_labels_add: Mapping[str, str] | Sequence[str] = ()
    container_labels_rm: Sequence[str] = ()
    command: Sequence[str] | None = None
    args: Sequence[str] | None = None
    force: bool = False
    """Redeploy the same spec (bumps ``TaskTemplate.ForceUpdate``)."""
    update_config: UpdateConfig | None = None
    rollback_config: RollbackConfig | None = None
    patch: SpecPatch | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.image is not None:
            validate_image_reference(self.image)
        env = _parse_pairs("env_add", self.env_add)
        env_rm = _check_keys("env_rm", self.env_rm)
        labels = _parse_pairs("labels_add", self.labels_add)
        labels_rm = _check_keys("labels_rm", self.labels_rm)
        clabels = _parse_pairs("container_labels_add", self.container_labels_add)
        clabels_rm = _check_keys("container_labels_rm", self.container_labels_rm)
        for name, added, removed in (
            ("env", env, env_rm),
            ("labels", labels, labels_rm),
            ("container_labels", clabels, clabels_rm),
        ):
            both = sorted(set(added) & set(removed))
            if both:
                raise ConfigError(f"{name}_rm", both, f"a key not also in {name}_add")
        object.__setattr__(self, "env_add", env)
        object.__setattr__(self, "env_rm", env_rm)
        object.__setattr__(self, "labels_add", labels)
        object.__setattr__(self, "labels_rm", labels_rm)
        object.__setattr__(self, "container_labels_add", clabels)
        object.__setattr__(self, "container_labels_rm", clabels_rm)
        if self.pin_digest and self.image is None:
            raise ConfigError("pin_digest", True, "only together with image")

    def apply(
        self,
        spec: Mapping[str, Any],
        image: str | None = None,
        *,
        resolved: ResolvedImage | None = None,
    ) -> dict[str, Any]:
        """Return a deep copy of ``spec`` with this change applied.

        ``image`` overrides ``image``. ``resolved`` (what the registry says
        of ``image``, for ``pin_digest``) pins its digest and sets the
        placement platforms, as ``docker service update --image`` does.
        """
        new: dict[str, Any] = copy.deepcopy(dict(spec))
        template = new.setdefault("TaskTemplate", {})
        container = template.setdefault("ContainerSpec", {})
        if image or self.image:
            container["Image"] = image or self.image
        if resolved is not None and self.image:
            pin_image(template, self.image, resolved)
        if self.env_add or self.env_rm:
            container["Env"] = _edit_env(container.get("Env") or [], self._env_add, self.env_rm)
        if self.labels_add or self.labels_rm:
            new["Labels"] = _edit_map(new.get("Labels") or {}, self._labels_add, self.labels_rm)
        if self.container_labels_add or self.container_labels_rm:
            container["Labels"] = _edit_map(
                container.get("Labels") or {},
                self._container_labels_add,
                self.container_labels_rm,
            )
        if self.command is not None:
            container["Command"] = list(self.command)
        if self.args is not None:
            container["Args"] = list(self.args)
        if self.force:
            template["ForceUpdate"] = int(template.get("ForceUpdate") or 0) + 1
        if self.update_config is not None:
            new["UpdateConfig"] = self.update_config.to_api()
        if self.rollback_config is not None:
            new["RollbackConfig"] = self.rollback_config.to_api()
        if self.patch is not None:
            patched = self.patch(new)
            if patched is not None:
                new = patched
        return new

    @property
    def _env_add(self) -> Mapping[str, str]:
        assert isinstance(self.env_add, Mapping)
        return self.env_add

    @property
    def _labels_add(self) -> Mapping[str, str]:
        assert isinstance(self.labels_add, Mapping)
        return self.labels_add

    @property
    def _container_labels_add(self) -> Mapping[str, str]:
        assert isinstance(self.container_labels_add, Mapping)
        return self.container_labels_add


def _edit_env(env: Sequence[str], add: Mapping[str, str], remove: Sequence[str]) -> list[str]:
    """Edit a ``KEY=VALUE`` list keeping its order, as ``--env-add/--env-rm`` do."""
    result: list[str] = []
    seen: set[str] = set()
    for item in env:
        key = item.partition("=")[0]
        if key in remove:
            continue
        if key in add:
            if key in seen:
                continue
            item = f"{key}={add[key]}"
        seen.add(key)
        result.append(item)
    result.extend(f"{key}={value}" for key, value in add.items() if key not in seen)
    return result


def _edit_map(
    current: Mapping[str, str], add: Mapping[str, str], remove: Sequence[str]
) -> dict[str, str]:
    result = {k: v for k, v in current.items() if k not in remove}
    result.update(add)
    return result


def diff_specs(before: Any, after: Any, path: str = "") -> list[str]:
    """Dotted paths where two specs differ (values are not included, so the
    result is safe to log even when the spec holds secrets in env)."""
    return list(_diff(before, after, path))


def diff_service_specs(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """``diff_specs`` of two service specs, with ``UpdateConfig`` and
    ``RollbackConfig`` compared as what they mean (``from_api`` on both
    sides): a zero the engine left out equals the zero we send, and a missing
    section equals Swarm's defaults."""

    def normalised(spec: Mapping[str, Any]) -> dict[str, Any]:
        result = dict(spec)
        for key, cls in (("UpdateConfig", UpdateConfig), ("RollbackConfig", RollbackConfig)):
            # not a config we can read: compare it as it is
            with contextlib.suppress(ConfigError):
                result[key] = cls.from_api(spec.get(key)).to_api()
        return result

    return diff_specs(normalised(before), normalised(after))


def _diff(before: Any, after: Any, path: str) -> Iterator[str]:
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in sorted(set(before) | set(after), key=str):
            yield from _diff(before.get(key), after.get(key), f"{path}.{key}" if path else key)
    elif before != after:
        yield path or "<root>"
