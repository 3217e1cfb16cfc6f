"""The lab's Prometheus: Debian's ``prometheus`` as a Swarm service.

It runs as a Swarm user runs it: one replica on the manager, the docker
socket mounted for ``dockerswarm_sd_configs`` (role ``tasks``), its
configuration a Swarm config, on the lab network so that it reaches every
task. It scrapes the running tasks of the services labelled
``prometheus.scrape=true`` (``images/prometheus/prometheus.yml``).

The controller runs on the host, so the HTTP API is published in ``host``
mode on the manager's address: the lab has no routing mesh (no IPVS), and a
``host`` port is a plain DNAT rule of the manager's engine.
"""

from __future__ import annotations

import hashlib
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import docker
from docker.types import ConfigReference, EndpointSpec, Mount, RestartPolicy

from ._images import ImageBuilder, context_source
from ._router_files import prometheus_rootfs
from .errors import LabError

__all__ = ["PORT", "SCRAPE_LABEL", "SERVICE", "LabPrometheus", "PrometheusImageBuilder"]

SERVICE = "zdd-lab-prometheus"
PORT = 9090
#: a service with this label set to ``true`` has its tasks scraped (port 8080)
SCRAPE_LABEL = "prometheus.scrape"
CONFIG_PATH = "/etc/prometheus/prometheus.yml"
_SECOND = 1_000_000_000
_HOST_PORT: Any = {
    "Protocol": "tcp",
    "TargetPort": PORT,
    "PublishedPort": PORT,
    "PublishMode": "host",
}


class PrometheusImageBuilder(ImageBuilder):
    """The lab Prometheus' image (``zdd-prometheus:2.42``)."""

    repository = "zdd-prometheus"
    tags: Mapping[str, str] = {"2.42": "prometheus"}
    source = "prometheus"

    def extra_files(self) -> dict[str, tuple[bytes, int]]:
        return prometheus_rootfs()


def config_text() -> bytes:
    """The lab Prometheus' configuration."""
    return (context_source("prometheus") / "prometheus.yml").read_bytes()


class LabPrometheus:
    """Starts the lab's Prometheus service, or finds it running."""

    def __init__(
        self,
        client_factory: Callable[[], Any],
        builder: ImageBuilder,
        socket: Path,
        address: str,
        network: str,
        progress: Callable[[str], None],
    ) -> None:
        self.client_factory = client_factory
        self.builder = builder
        self.socket = socket
        self.address = address
        self.network = network
        self.progress = progress

    @property
    def url(self) -> str:
        """Its HTTP API, from the host: the manager's address, port 9090."""
        return f"http://{self.address}:{PORT}"

    def ensure(self, timeout: float = 90) -> str:
        """Build its image if needed, (re)create the service if it is not
        the current one, wait until it is ready; its URL."""
        tag = next(iter(self.builder.tags))
        self.builder.ensure()
        # pinned by digest: a rebuilt image makes a new spec
        digest = (self.builder.current() or {}).get(tag)
        image = self.builder.reference(tag) + (f"@{digest}" if digest else "")
        data = config_text()
        config_name = f"{SERVICE}-{hashlib.sha256(data).hexdigest()[:12]}"
        client = self.client_factory()
        try:
            if self._current(client) != (image, config_name):
                self._create(client, image, config_name, data)
        finally:
            client.close()
        self._wait_ready(timeout)
        return self.url

    def _current(self, client: Any) -> tuple[str, str] | None:
        try:
            spec = client.api.inspect_service(SERVICE)["Spec"]["TaskTemplate"]["ContainerSpec"]
        except docker.errors.NotFound:
            return None
        configs = [c.get("ConfigName", "") for c in spec.get("Configs") or []]
        return str(spec.get("Image", "")), configs[0] if configs else ""

    def _create(self, client: Any, image: str, config_name: str, data: bytes) -> None:
        self.progress(f"starting Prometheus ({SERVICE}) on {self.url}")
        try:
            client.api.remove_service(SERVICE)
            time.sleep(2)  # its host port is free once its task is gone
        except docker.errors.NotFound:
            pass
        found = client.api.configs(filters={"name": config_name})
        ids = [c["ID"] for c in found if c["Spec"]["Name"] == config_name]
        config_id = ids[0] if ids else client.api.create_config(config_name, data)["ID"]
        client.services.create(
            image,
            name=SERVICE,
            networks=[self.network],
            constraints=["node.role==manager"],
            mounts=[Mount("/var/run/docker.sock", str(self.socket), type="bind")],
            configs=[ConfigReference(config_id, config_name, filename=CONFIG_PATH)],
            # Swarm refuses ingress ports with dnsrr; host ports are fine
            endpoint_spec=EndpointSpec(mode="dnsrr", ports=[_HOST_PORT]),
            restart_policy=RestartPolicy(condition="any", delay=_SECOND),
            labels={"zdd.lab": "1"},
        )

    def ready(self) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise LabError(f"Prometheus ({SERVICE}) not ready on {self.url} in {timeout:g}s")
            time.sleep(0.5)
