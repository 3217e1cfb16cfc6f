"""The one exception tree of zdd_swarm.

Every error the library raises derives from ``ZddError``; errors of the
``docker`` SDK and of ``requests`` are mapped at one boundary (the engine
adapter) and chained with ``raise ... from exc``::

    ZddError
    ├── InputError (also ValueError)     bad input: nothing was changed on the cluster
    │   ├── ConfigError                  an invalid value (names field, value, what is allowed)
    │   │   └── StepError                one step of a canary (names its index and field)
    │   ├── MetricQueryError             a metric provider refuses the query, or is unreachable
    │   │                                before the rollout starts
    │   ├── ServiceNotFound              no such service
    │   ├── NotAManager                  the engine is not a swarm manager
    │   ├── UpdateInProgress             another update of the service is in progress
    │   ├── ConcurrentChange             the service changed while we prepared the update
    │   ├── UnsupportedServiceMode       a job: update semantics never complete it
    │   ├── UpdatePaused                 the engine paused the service's last update
    │   └── InvalidImageReference        an image reference the engine would refuse
    └── EngineError                      talking to the engine went wrong
        ├── EngineUnavailable            cannot reach the engine (transient)
        ├── VersionConflict              "update out of sequence" (transient)
        ├── EngineAPIError               the engine refused a request (permanent)
        └── DockerConfigError            the local docker client setup is unusable:
                                         DOCKER_HOST, TLS files, SSH transport, the
                                         docker config file, a credential helper

``transient`` tells whether retrying the same call could help (kopf's split of
temporary and permanent errors).
"""

from __future__ import annotations

__all__ = [
    "ConcurrentChange",
    "ConfigError",
    "DockerConfigError",
    "EngineAPIError",
    "EngineError",
    "EngineUnavailable",
    "InputError",
    "InvalidImageReference",
    "MetricQueryError",
    "NotAManager",
    "ServiceNotFound",
    "StepError",
    "UnsupportedServiceMode",
    "UpdateInProgress",
    "UpdatePaused",
    "VersionConflict",
    "ZddError",
]


class ZddError(Exception):
    """Base of every error raised by zdd_swarm."""

    transient: bool = False


class InputError(ZddError, ValueError):
    """Bad input, detected before anything was changed on the cluster."""


class ConfigError(InputError):
    """An invalid configuration value.

    The message names the field, the value given and what is allowed.
    """

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}: invalid value {value!r}: {allowed}")


class StepError(ConfigError):
    """An invalid step of a canary: ``field`` reads ``steps[INDEX].FIELD``
    (``index`` counts from 0, as in the list given; ``step_field`` is FIELD)."""

    def __init__(
        self, index: int, field: str, value: object, allowed: str, where: str = "steps"
    ) -> None:
        self.index = index
        self.step_field = field
        super().__init__(f"{where}[{index}].{field}", value, allowed)


class MetricQueryError(InputError):
    """A metric's provider refused its query (Prometheus says ``bad_data``),
    or could not be reached when the analysis was checked before the rollout."""

    def __init__(self, metric: str, message: str) -> None:
        self.metric = metric
        super().__init__(f"metric {metric!r}: {message}")


class ServiceNotFound(InputError):
    """The named service does not exist."""

    def __init__(self, service: str) -> None:
        self.service = service
        super().__init__(f"service {service!r} not found")


class NotAManager(InputError):
    """The engine answered but is not a swarm manager."""


class UnsupportedServiceMode(InputError):
    """The service runs in a mode a rolling update does not apply to (a job)."""


class UpdatePaused(InputError):
    """The engine paused the service's last update (or rollback) half way;
    sending the same spec again would not say whether the release is good."""


class UpdateInProgress(InputError):
    """Another update of the service is in progress; we do not start a second."""


class ConcurrentChange(InputError):
    """The service changed between our inspect and our update; nothing was sent."""


class InvalidImageReference(InputError):
    """An image reference the engine would refuse."""

    def __init__(self, reference: str, why: str) -> None:
        self.reference = reference
        super().__init__(f"invalid image reference {reference!r}: {why}")


class EngineError(ZddError):
    """Talking to the Docker engine went wrong."""


class EngineUnavailable(EngineError):
    """The engine could not be reached (after bounded retries)."""

    transient = True


class VersionConflict(EngineError):
    """The service changed between our inspect and our update."""

    transient = True


class EngineAPIError(EngineError):
    """The engine refused a request; retrying the same call will not help."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(message)


class DockerConfigError(EngineError):
    """The local docker client setup cannot be used, so no request was sent:
    ``DOCKER_HOST`` (or ``--host``), the TLS files of ``DOCKER_CERT_PATH``, the
    SSH transport, the docker config file (``$DOCKER_CONFIG/config.json``,
    ``~/.docker/config.json``) or a credential helper it names.

    The message names the setting or file; retrying will not help.
    """
