"""A local multi-node Docker Swarm lab for tests, the demo and your own scripts.

::

    from zdd_swarm.lab import Lab

    lab = Lab(nodes=3)
    info = lab.up()                 # idempotent: builds, repairs or just checks
    client = docker.DockerClient(base_url=lab.docker_host)
    client.services.create(lab.image("v1"), networks=[lab.network],
                           endpoint_spec=EndpointSpec(mode="dnsrr"), ...)
    lab.kill_node(3); lab.start_node(3)   # lose a machine, bring it back
    lab.down()

Needs root on Linux; installs Debian's docker.io, docker-registry,
busybox-static, iptables and iproute2 if they are missing. The command line:
``python -m zdd_swarm.lab up|down|status|kill-node I|start-node I|env``.
See docs/lab.md.
"""

from __future__ import annotations

from ._images import REPOSITORY, TAGS
from ._lab import BRIDGE, DEFAULT_NODES, HOST_ADDRESS, NETWORK, REGISTRY, Lab, LabInfo, LabNode
from .errors import LabError

__all__ = [
    "BRIDGE",
    "DEFAULT_NODES",
    "HOST_ADDRESS",
    "NETWORK",
    "REGISTRY",
    "REPOSITORY",
    "TAGS",
    "Lab",
    "LabError",
    "LabInfo",
    "LabNode",
]
