"""The lab: a multi-node Docker Swarm on one Linux machine.

Each node is its own ``dockerd`` in its own network, UTS and mount namespace,
attached to one host bridge; node 1 is the manager; a registry in the host
namespace serves the test images. See docs/lab.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker
from docker.errors import APIError, DockerException

from . import _system as sysx
from ._engines import DEFAULT_ENGINE, ENGINES, SYSTEM_ENGINE, Engine, EngineCache, parse_engines
from ._images import (
    REPOSITORY,
    ROUTER_REPOSITORY,
    TAGS,
    ImageBuilder,
    RegistryClient,
    RouterImageBuilder,
)
from ._prometheus import LabPrometheus, PrometheusImageBuilder
from ._router_files import rootfs_files
from .errors import LabError

__all__ = [
    "BRIDGE",
    "DEFAULT_NODES",
    "HOST_ADDRESS",
    "NETWORK",
    "REGISTRY",
    "Lab",
    "LabInfo",
    "LabNode",
]

log = logging.getLogger("zdd_swarm.lab")

DEFAULT_NODES = 3
MAX_NODES = 20
BRIDGE = "zddbr0"
HOST_ADDRESS = "10.88.0.1"
PREFIX_LEN = 24
REGISTRY_PORT = 5000
REGISTRY = f"{HOST_ADDRESS}:{REGISTRY_PORT}"
NETWORK = "zdd-lab"
ADDR_POOL = "10.201.0.0/16"
#: The lab network's own subnet: outside ADDR_POOL, where Swarm takes a /24
#: for every other overlay network (a stack's), and wide (16382 addresses) so
#: that test runs do not reuse task addresses. Inside the pool (a /20 there),
#: once the stack tests had made some twenty networks, healthy new tasks on
#: the lab network were unreachable from other nodes for seconds ("No route
#: to host") and nodes rejected tasks with "Pool overlaps" (docs/lab.md).
NETWORK_SUBNET = "10.202.0.0/18"
SWARM_PORT = 2377
RULE_COMMENT = "zdd-lab"
CGROUP_ROOT = "zdd-lab"
#: The docker SDK asks each engine for its API version (20.10 speaks 1.41,
#: 28.5 1.51); a fixed one would break with engines whose minimum is higher.
API_VERSION = "auto"
BUSYBOX = Path("/bin/busybox")
PACKAGES = ("docker.io", "docker-registry", "busybox-static", "iptables", "iproute2")
#: command -> Debian package that provides it
COMMANDS = {
    "dockerd": "docker.io",
    "containerd": "docker.io",
    "runc": "docker.io",
    "docker-registry": "docker-registry",
    "ip": "iproute2",
    "iptables": "iptables",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "mount": "mount",
    "umount": "mount",
}


#: iptables rules (filter table) up() inserts and down() deletes, tagged RULE_COMMENT.
def _rules(bridge: str) -> tuple[tuple[str, ...], ...]:
    return (
        # Bridge netfilter + a FORWARD policy of DROP (any dockerd in the host
        # namespace sets it) would drop traffic between the node namespaces.
        ("FORWARD", "-i", bridge, "-o", bridge),
        # The registry listens on the bridge address; keep it reachable from
        # the nodes whatever the host's INPUT policy is.
        ("INPUT", "-i", bridge),
    )


RULES = _rules(BRIDGE)
#: Labs side by side on one machine: instance 0 (the default) and 1..MAX_INSTANCE.
MAX_INSTANCE = 9


@dataclass(frozen=True)
class _Site:
    """The host-side names and addresses of one lab instance."""

    instance: int

    @property
    def tag(self) -> str:
        return "" if self.instance == 0 else str(self.instance)

    @property
    def bridge(self) -> str:
        return f"zddbr{self.instance}"

    @property
    def host_address(self) -> str:
        return f"10.88.{self.instance}.1"

    @property
    def registry(self) -> str:
        return f"{self.host_address}:{REGISTRY_PORT}"

    @property
    def comment(self) -> str:
        """Tags the iptables rules and names the cgroup root."""
        return f"zdd-lab{self.tag}"

    @property
    def node_prefix(self) -> str:
        return f"zdd{self.tag}-n"

    @property
    def veth_prefix(self) -> str:
        return f"vethzdd{self.tag}x" if self.tag else "vethzdd"

    @property
    def rules(self) -> tuple[tuple[str, ...], ...]:
        return _rules(self.bridge)


# Run in the node's new UTS and mount namespaces (see _start_daemon): the
# node gets its own hostname, and a private /run/containerd, so that dockerd
# starts its own containerd even if the machine runs one there.
_NODE_SHELL = (
    'hostname "$0" && mkdir -p /run/containerd && '
    'mount -t tmpfs -o mode=0711 zdd-lab /run/containerd && exec "$@"'
)

_T = TypeVar("_T")


@dataclass(frozen=True)
class LabNode:
    """One node of the lab."""

    index: int
    #: netns name, hostname and swarm node hostname, e.g. ``zdd-n2``
    name: str
    #: its address on the lab bridge, e.g. ``10.88.0.12``
    address: str
    #: the docker host URL of its engine, e.g. ``unix:///run/zdd-lab/node2.sock``
    docker_host: str
    #: ``manager`` (node 1) or ``worker``
    role: str
    #: the engine it runs (or is to run): ``28.5``, ``26.1``, ``20.10`` or a folder
    engine: str = DEFAULT_ENGINE


@dataclass(frozen=True)
class LabInfo:
    """What ``Lab.up`` brought up (or found up)."""

    docker_host: str
    registry: str
    network: str
    nodes: list[LabNode]
    images: dict[str, str]
    seconds: float
    #: True when everything was already up and nothing had to be done
    reused: bool = field(default=False)


def _node_index(text: str, pattern: str) -> int | None:
    match = re.fullmatch(pattern, text)
    return int(match.group(1)) if match else None


class Lab:
    """A local multi-node Docker Swarm lab (needs root on Linux).

    ``Lab(nodes=3).up()`` creates (or repairs, or just checks) a host bridge
    ``zddbr0`` (10.88.0.1/24), one network namespace and ``dockerd`` per node
    (``zdd-n1`` .. ``zdd-nN`` at 10.88.0.11 ..), a swarm with node 1 as the
    manager, an attachable overlay network ``zdd-lab``, a registry on
    10.88.0.1:5000 and the test images in it. ``down`` removes all of it.

    ``nodes=None`` means the node count of the lab last brought up (else 3).
    ``engine`` is the Docker engine of every node (``"28.5"``, ``"26.1"``,
    ``"20.10"`` or a folder with ``dockerd`` in it), or one per node
    (``"28.5,20.10,26.1"`` or a list; node 1 is the manager); None means
    ``$ZDD_LAB_ENGINE``, else 28.5. Fetched engines are kept under
    ``cache_dir`` (default ``/var/cache/zdd-lab`` or ``$ZDD_LAB_CACHE_DIR``).
    State lives under ``state_dir`` (default ``/var/lib/zdd-lab`` or
    ``$ZDD_LAB_STATE_DIR``), runtime files under ``run_dir`` (default
    ``/run/zdd-lab`` or ``$ZDD_LAB_RUN_DIR``). ``progress`` receives one-line
    messages about what is being done (default: the ``zdd_swarm.lab`` logger
    at INFO).
    """

    def __init__(
        self,
        nodes: int | None = None,
        *,
        state_dir: str | Path | None = None,
        run_dir: str | Path | None = None,
        progress: Callable[[str], None] | None = None,
        daemon_timeout: float = 40,
        engine: str | Sequence[str] | None = None,
        cache_dir: str | Path | None = None,
        instance: int | None = None,
    ) -> None:
        if instance is None:
            text = os.environ.get("ZDD_LAB_INSTANCE") or "0"
            instance = int(text) if text.isdigit() else -1
        if not isinstance(instance, int) or not 0 <= instance <= MAX_INSTANCE:
            raise LabError(
                f"instance must be an integer from 0 to {MAX_INSTANCE}, not {instance!r}"
            )
        self.instance = instance
        self._site = _Site(instance)
        suffix = f"-{instance}" if instance else ""
        self.state_dir = Path(
            state_dir or os.environ.get("ZDD_LAB_STATE_DIR") or f"/var/lib/zdd-lab{suffix}"
        )
        self.run_dir = Path(run_dir or os.environ.get("ZDD_LAB_RUN_DIR") or f"/run/zdd-lab{suffix}")
        if nodes is not None and (not isinstance(nodes, int) or not 1 <= nodes <= MAX_NODES):
            raise LabError(f"nodes must be an integer from 1 to {MAX_NODES}, not {nodes!r}")
        if engine is None:
            engine = os.environ.get("ZDD_LAB_ENGINE") or DEFAULT_ENGINE
        text = engine if isinstance(engine, str) else ",".join(engine)
        engines = parse_engines(text, nodes)
        if nodes is None:
            nodes = len(engines) if len(engines) > 1 else self._recorded_nodes() or DEFAULT_NODES
            engines = engines if len(engines) > 1 else engines * nodes
        if not 1 <= nodes <= MAX_NODES:
            raise LabError(f"nodes must be an integer from 1 to {MAX_NODES}, not {nodes!r}")
        self.nodes = nodes
        #: the engine of each node, node 1 first
        self.engines: list[str] = engines
        self.daemon_timeout = daemon_timeout
        self._progress = progress or (lambda message: log.info("%s", message))
        self._engine_cache = EngineCache(cache_dir, self._progress)
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._procs_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Lab(nodes={self.nodes}, engine={','.join(self.engines)!r}, "
            f"state_dir={str(self.state_dir)!r})"
        )

    # -- public names ----------------------------------------------------------

    @property
    def docker_host(self) -> str:
        """The manager's docker host URL (``DOCKER_HOST``)."""
        return self.node_host(1)

    def node_host(self, i: int) -> str:
        """The docker host URL of node ``i`` (1-based)."""
        return f"unix://{self._socket(self._check_index(i))}"

    @property
    def registry(self) -> str:
        return self._site.registry

    @property
    def host_address(self) -> str:
        """The host's address on the lab bridge (the nodes' default route)."""
        return self._site.host_address

    def image(self, tag: str) -> str:
        """The reference of a test image, e.g. ``10.88.0.1:5000/zdd-app:v1``."""
        return f"{self.registry}/{REPOSITORY}:{tag}"

    def router_image(self, kind: str) -> str:
        """The reference of a router image: ``kind`` is ``nginx`` or ``haproxy``."""
        return f"{self.registry}/{ROUTER_REPOSITORY}:{kind}"

    @property
    def images(self) -> dict[str, str]:
        return {tag: self.image(tag) for tag in TAGS}

    def prometheus(self) -> str:
        """Start the lab's Prometheus (building its image) unless it runs;
        the URL of its HTTP API from the host (the manager's address, port
        9090). It scrapes the services labelled ``prometheus.scrape=true``."""
        with self._locked(), self._errors("starting Prometheus"):
            return self._prometheus().ensure()

    @property
    def network(self) -> str:
        """The attachable overlay network up() creates."""
        return NETWORK

    def node(self, i: int) -> LabNode:
        i = self._check_index(i)
        return LabNode(
            index=i,
            name=self.node_name(i),
            address=self.node_address(i),
            docker_host=self.node_host(i),
            role="manager" if i == 1 else "worker",
            engine=self.engines[i - 1] if i <= self.nodes else DEFAULT_ENGINE,
        )

    def node_name(self, i: int) -> str:
        return f"{self._site.node_prefix}{i}"

    def node_address(self, i: int) -> str:
        return f"10.88.{self.instance}.{10 + i}"

    def client(self, i: int = 1, timeout: int = 60) -> docker.DockerClient:
        """A ``docker.DockerClient`` for node ``i`` (default: the manager)."""
        return docker.DockerClient(base_url=self.node_host(i), version=API_VERSION, timeout=timeout)

    def info(self, seconds: float = 0.0, reused: bool = False) -> LabInfo:
        return LabInfo(
            docker_host=self.docker_host,
            registry=self.registry,
            network=NETWORK,
            nodes=[self.node(i) for i in self._indices()],
            images=self.images,
            seconds=round(seconds, 2),
            reused=reused,
        )

    # -- paths -----------------------------------------------------------------

    def _indices(self) -> range:
        return range(1, self.nodes + 1)

    def _check_index(self, i: int) -> int:
        if not isinstance(i, int) or not 1 <= i <= MAX_NODES:
            raise LabError(f"node index must be 1..{MAX_NODES} (1 is the manager), not {i!r}")
        return i

    def _socket(self, i: int) -> Path:
        return self.run_dir / f"node{i}.sock"

    def _node_dir(self, i: int) -> Path:
        return self.state_dir / f"n{i}"

    def _data_root(self, i: int) -> Path:
        return self._node_dir(i) / "docker"

    def _daemon_log(self, i: int) -> Path:
        return self._node_dir(i) / "dockerd.log"

    def _exec_root(self, i: int) -> Path:
        return self.run_dir / f"n{i}"

    def _pidfile(self, i: int) -> Path:
        return self._exec_root(i) / "dockerd.pid"

    def _netns(self, i: int) -> Path:
        return Path("/run/netns") / self.node_name(i)

    def _veth(self, i: int) -> str:
        return f"{self._site.veth_prefix}{i}"

    def _cgroup(self, i: int) -> str:
        return f"/{self._site.comment}/n{i}"

    @property
    def _registry_config(self) -> Path:
        return self.run_dir / "registry.yml"

    @property
    def _registry_pidfile(self) -> Path:
        return self.run_dir / "registry.pid"

    @property
    def _registry_log(self) -> Path:
        return self.state_dir / "registry.log"

    @property
    def _registry_storage(self) -> Path:
        return self.state_dir / "registry"

    @property
    def _record(self) -> Path:
        return self.state_dir / "lab.json"

    def _recorded(self) -> dict[str, Any]:
        try:
            value = json.loads(self._record.read_text())
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def _recorded_nodes(self) -> int | None:
        value = self._recorded().get("nodes")
        return value if isinstance(value, int) and 1 <= value <= MAX_NODES else None

    def recorded_engines(self) -> list[str] | None:
        """The engines of the lab last brought up (node 1 first), if known."""
        record = self._recorded()
        value = record.get("engines")
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return value
        nodes = self._recorded_nodes()
        # A lab recorded without engines ran Debian 12's (the only one then).
        return [SYSTEM_ENGINE] * nodes if nodes and "engines" not in record else None

    def _engine_file(self, i: int) -> Path:
        return self._node_dir(i) / "engine.json"

    def node_engine(self, i: int) -> str | None:
        """The engine node ``i`` was last started with, or the one whose
        dockerd it runs (None if unknown)."""
        try:
            value = json.loads(self._engine_file(i).read_text()).get("engine")
        except (OSError, ValueError, AttributeError):
            value = None
        if isinstance(value, str):
            return value
        exe = self._daemon_exe(i)
        for name in ENGINES:
            if exe is not None and exe == str(
                Path(self._engine_cache.engine(name).dockerd).resolve()
            ):
                return name
        return None

    def _daemon_exe(self, i: int) -> str | None:
        pid = self._daemon_pid(i)
        if pid is None:
            return None
        try:
            return os.readlink(f"/proc/{pid}/exe")
        except OSError:
            return None

    def _wanted(self, i: int) -> Engine:
        return self._engine_cache.engine(self.engines[i - 1])

    def engine_version(self, i: int) -> tuple[str, str] | None:
        """(engine version, API version) node ``i``'s dockerd reports, or
        None if it does not answer."""
        try:
            client = self.client(i, timeout=5)
        except DockerException:
            return None
        try:
            version = client.version()
        except (DockerException, OSError):
            return None
        finally:
            client.close()
        return str(version.get("Version", "?")), str(version.get("ApiVersion", "?"))

    # -- up --------------------------------------------------------------------

    def up(self) -> LabInfo:
        """Bring the lab up, or repair it, or (fast) find it up.

        Idempotent: whatever an earlier run, a killed daemon, a reboot or a
        different node count left is detected and repaired, or wiped and
        rebuilt. Raises ``LabError`` with a one-line reason.
        """
        started = time.monotonic()
        self._require_root()
        self._ensure_packages()
        with self._locked(), self._errors("bringing the lab up"):
            # Every engine is at hand before any node is touched.
            for name in dict.fromkeys(self.engines):
                self._engine_cache.ensure(name)
            problems = self.problems()
            if not problems:
                return self.info(time.monotonic() - started, reused=True)
            self._progress(
                f"bringing the lab up ({self.nodes} nodes): "
                + "; ".join(problems[:3])
                + (" ..." if len(problems) > 3 else "")
            )
            for path in (self.state_dir, self.run_dir):
                path.mkdir(parents=True, exist_ok=True)
            self._record.write_text(
                json.dumps({"nodes": self.nodes, "engines": self.engines}) + "\n"
            )
            self._ensure_host_network()
            extra = sorted(self._existing_nodes() - set(self._indices()))
            if extra:
                self._progress(f"removing nodes {extra} (the lab now has {self.nodes})")
                self._parallel(self._remove_node, extra)
            switched = [i for i in self._indices() if self._engine_problem(i)]
            if switched:
                self._progress(
                    "recreating "
                    + ", ".join(
                        f"{self.node_name(i)} on engine {self.engines[i - 1]}" for i in switched
                    )
                )
                self._parallel(self._remove_node, switched)
                self._flush_neighbours()
            self._ensure_registry()
            self._parallel(self._ensure_node, self._indices())
            self._wait_registry()
            self._ensure_swarm()
            self._ensure_network()
            self._builder().ensure()
            self._router_builder().ensure()
            leftover = self.problems()
            if leftover:
                raise LabError("the lab is still not up: " + "; ".join(leftover))
            info = self.info(time.monotonic() - started)
            self._progress(
                f"lab up in {info.seconds:.1f}s: {self.nodes} nodes, DOCKER_HOST={self.docker_host}"
            )
            return info

    def is_up(self) -> bool:
        """True if ``up`` would find nothing to do."""
        try:
            return not self.problems()
        except Exception:  # is_up answers, it never raises
            return False

    def problems(self) -> list[str]:
        """What is not as ``up`` leaves it (empty when the lab is up).
        Needs root, like everything that looks at the lab's namespaces."""
        self._require_root()
        problems: list[str] = []
        bridge = self._site.bridge
        if not Path(f"/sys/class/net/{bridge}").exists():
            return [f"no bridge {bridge}"]
        for rule in self._site.rules:
            if not self._rule_present(rule):
                problems.append(f"iptables rule {' '.join(rule)} missing")
        for i in self._indices():
            problem = self._netns_problem(i) or self._engine_problem(i) or self._daemon_problem(i)
            if problem:
                problems.append(problem)
        extra = sorted(self._existing_nodes() - set(self._indices()))
        if extra:
            problems.append(f"leftover nodes {extra}")
        if self._registry_pid() is None or not self._registry_client().answers():
            problems.append(f"registry {self.registry} not answering")
        if problems:
            return problems
        problems += self._swarm_problems()
        if problems:
            return problems
        if not self._network_ok():
            problems.append(f"no overlay network {NETWORK}")
        if self._builder().current() is None:
            problems.append("test images missing or out of date in the registry")
        else:
            try:
                if self._router_builder().current() is None:
                    problems.append("router images missing or out of date in the registry")
            except LabError as exc:  # their packages could not be fetched
                problems.append(str(exc))
        return problems

    # -- down ------------------------------------------------------------------

    def down(self, purge: bool = False) -> None:
        """Remove every daemon, network namespace, veth, the bridge, the
        iptables rules and mounts the lab made, stop the registry and delete
        the nodes' data and the runtime directory.

        The registry's storage and the image stamp stay (the next up() does
        not rebuild the images) unless ``purge``, which deletes the whole
        state directory. Finds nodes of any count, not only ``self.nodes``.
        """
        self._require_root()
        with self._locked(), self._errors("taking the lab down"):
            indices = sorted(self._existing_nodes() | set(self._indices()))
            self._progress(f"taking the lab down ({len(indices)} nodes)")
            # Nodes and the registry (0) side by side.
            self._parallel(
                lambda i: self._remove_node(i) if i else self._stop_registry(), [0, *indices]
            )
            self._remove_host_network()
            sysx.remove_cgroups(self._site.comment)
            sysx.remove_tree(self.run_dir)
            if purge:
                sysx.remove_tree(self.state_dir)
            else:
                sysx.unmount_under([self.state_dir])
            self._progress("lab down")

    # -- node failures ---------------------------------------------------------

    def kill_node(self, i: int) -> None:
        """SIGKILL every process of node ``i`` (dockerd, containerd, shims,
        containers): the machine is lost. Its data stays; ``start_node``
        brings it back."""
        self._require_root()
        i = self._check_index(i)
        with self._errors(f"killing node {i}"):
            sysx.kill_all(lambda: self._node_pids(i))
            self._reap(i)

    def start_node(self, i: int, wait_ready: bool = False, timeout: float = 60) -> None:
        """Start node ``i``'s dockerd again with the same flags; it rejoins the
        swarm from its on-disk state. Returns when the daemon answers (and,
        with ``wait_ready``, when the manager sees the node Ready). Does
        nothing to a node that is running."""
        self._require_root()
        i = self._check_index(i)
        with self._errors(f"starting node {i}"):
            self._ensure_host_network()
            self._ensure_node(i)
            if wait_ready and not self.wait_node_state(i, "ready", timeout):
                raise LabError(
                    f"node {i} answers but is not Ready in the swarm "
                    f"after {timeout:.0f}s (manager sees: {self.node_state(i)})"
                )

    def node_state(self, i: int) -> str | None:
        """The manager's view of node ``i``: ``ready``, ``down``, ``unknown``,
        ... or None if the manager does not list it or does not answer."""
        try:
            client = self.client(1, timeout=5)
        except DockerException:
            return None
        try:
            for node in client.api.nodes():
                if node.get("Description", {}).get("Hostname") == self.node_name(i):
                    return str(node.get("Status", {}).get("State"))
        except (DockerException, OSError):
            return None
        finally:
            client.close()
        return None

    def wait_node_state(self, i: int, state: str, timeout: float = 60) -> bool:
        """Wait until the manager reports node ``i`` in ``state``."""
        return sysx.wait_for(lambda: self.node_state(i) == state, timeout, 0.5)

    # -- registry failures -----------------------------------------------------

    def stop_registry(self) -> None:
        """Stop the registry: pulls fail until ``start_registry``. Images
        the nodes already hold still run."""
        self._require_root()
        with self._errors("stopping the registry"):
            self._stop_registry()

    def start_registry(self) -> None:
        """Start the registry again (its storage is kept) and wait until it
        answers."""
        self._require_root()
        with self._errors("starting the registry"):
            self._ensure_registry()
            self._wait_registry()

    # -- helpers: guards -------------------------------------------------------

    def _require_root(self) -> None:
        if os.geteuid() != 0:
            raise LabError(
                "the lab needs root (it creates network namespaces, a bridge and "
                "iptables rules and runs dockerd): run it as root"
            )

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except LabError:
            raise
        except (DockerException, OSError, subprocess.SubprocessError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LabError(f"{doing}: {first}") from exc

    @contextlib.contextmanager
    def _locked(self, timeout: float = 600) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".lock", "a+") as handle:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LabError(
                            f"another lab operation holds {handle.name} "
                            f"for more than {timeout:.0f}s"
                        ) from None
                    time.sleep(0.2)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _parallel(self, fn: Callable[[int], _T], items: Sequence[int] | range) -> list[_T]:
        items = list(items)
        if len(items) <= 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(max_workers=len(items)) as pool:
            futures = [pool.submit(fn, i) for i in items]
            return [f.result() for f in futures]

    # -- helpers: packages -----------------------------------------------------

    def _missing(self) -> list[str]:
        missing = [cmd for cmd in COMMANDS if sysx.which(cmd) is None]
        if not sysx.is_static_elf(BUSYBOX):
            missing.append(f"{BUSYBOX} (static)")
        return missing

    def _ensure_packages(self) -> None:
        missing = self._missing()
        if not missing:
            return
        if sysx.which("apt-get") is None:
            raise LabError(
                f"missing {', '.join(missing)} and there is no apt-get: install "
                f"the equivalents of Debian's {' '.join(PACKAGES)}"
            )
        self._progress(f"installing {' '.join(PACKAGES)} (missing: {', '.join(missing)})")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for args in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *PACKAGES]):
            proc = subprocess.run(
                args, capture_output=True, text=True, env=env, check=False, timeout=1800
            )
            if proc.returncode != 0:
                lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
                raise LabError(
                    f"`{' '.join(args)}` failed (exit {proc.returncode}): "
                    f"{lines[-1] if lines else 'no output'}"
                )
        still = self._missing()
        if still:
            raise LabError(f"still missing after apt-get install: {', '.join(still)}")

    # -- helpers: host network -------------------------------------------------

    def _rule_spec(self, rule: Sequence[str]) -> list[str]:
        return [*rule[1:], "-m", "comment", "--comment", self._site.comment, "-j", "ACCEPT"]

    def _rule_present(self, rule: Sequence[str]) -> bool:
        args = ["iptables", "-w", "-C", rule[0], *self._rule_spec(rule)]
        return sysx.run(args, check=False).returncode == 0

    def _ensure_host_network(self) -> None:
        bridge = self._site.bridge
        if not Path(f"/sys/class/net/{bridge}").exists():
            sysx.run(["ip", "link", "add", bridge, "type", "bridge"])
        sysx.run(["ip", "addr", "replace", f"{self.host_address}/{PREFIX_LEN}", "dev", bridge])
        sysx.run(["ip", "link", "set", bridge, "up"])
        for rule in self._site.rules:
            if not self._rule_present(rule):
                sysx.run(["iptables", "-w", "-I", rule[0], "1", *self._rule_spec(rule)])

    def _remove_host_network(self) -> None:
        for _ in range(10):
            listing = sysx.run(["iptables", "-w", "-S"], check=False).stdout.splitlines()
            ours = [
                line
                for line in listing
                if line.startswith("-A ")
                and re.search(rf'--comment "?{re.escape(self._site.comment)}"?(\s|$)', line)
            ]
            if not ours:
                break
            for line in ours:
                sysx.run(["iptables", "-w", "-D", *shlex.split(line)[1:]], check=False)
        if Path(f"/sys/class/net/{self._site.bridge}").exists():
            sysx.run(["ip", "link", "del", self._site.bridge], check=False)

    # -- helpers: nodes --------------------------------------------------------

    def _existing_nodes(self) -> set[int]:
        """Indices of nodes anything is left of: netns, veth, dirs, sockets,
        processes."""
        found: set[int] = set()
        sources: list[tuple[Path, str]] = [
            (Path("/run/netns"), re.escape(self._site.node_prefix) + r"(\d+)"),
            (Path("/sys/class/net"), re.escape(self._site.veth_prefix) + r"(\d+)"),
            (self.state_dir, r"n(\d+)"),
            (self.run_dir, r"n(\d+)"),
            (self.run_dir, r"node(\d+)\.sock"),
        ]
        for directory, pattern in sources:
            with contextlib.suppress(OSError):
                for entry in os.listdir(directory):
                    index = _node_index(entry, pattern)
                    if index is not None:
                        found.add(index)
        prefix = str(self.run_dir) + "/n"
        for pid in sysx.all_pids():
            for arg in sysx.cmdline(pid):
                if arg.startswith(prefix):
                    index = _node_index(arg[len(prefix) :].split("/")[0], r"(\d+)")
                    if index is not None:
                        found.add(index)
        return {i for i in found if 1 <= i <= MAX_NODES}

    def _node_pids(self, i: int) -> set[int]:
        netns = self._netns(i)
        return sysx.find_pids(
            netns=netns if sysx.ns_id(netns) is not None and self._is_nsfs(netns) else None,
            markers=[str(self._exec_root(i)), str(self._data_root(i)), str(self._socket(i))],
            cgroup=self._cgroup(i),
        )

    @staticmethod
    def _is_nsfs(path: Path) -> bool:
        mine = sysx.ns_id("/proc/self/ns/net")
        theirs = sysx.ns_id(path)
        return mine is not None and theirs is not None and mine[0] == theirs[0]

    def _netns_problem(self, i: int) -> str | None:
        name, netns = self.node_name(i), self._netns(i)
        if not self._is_nsfs(netns):
            return f"no network namespace {name}"
        master = Path(f"/sys/class/net/{self._veth(i)}/master")
        if not master.exists() or master.resolve().name != self._site.bridge:
            return f"{self._veth(i)} not on {self._site.bridge}"
        addr = sysx.run(
            ["ip", "-n", name, "-o", "-4", "addr", "show", "dev", "eth0", "up"], check=False
        ).stdout
        if f" {self.node_address(i)}/{PREFIX_LEN} " not in addr:
            return f"{name}: eth0 has no {self.node_address(i)}/{PREFIX_LEN}"
        route = sysx.run(["ip", "-n", name, "route", "show", "default"], check=False).stdout
        if f"via {self.host_address}" not in route:
            return f"{name}: no default route via {self.host_address}"
        return None

    def _ensure_netns(self, i: int) -> None:
        name, netns, veth = self.node_name(i), self._netns(i), self._veth(i)
        if self._netns_problem(i) is None:
            return
        if not self._is_nsfs(netns):
            # The daemon (if any) lives in a namespace that is gone: restart it.
            sysx.kill_all(lambda: self._node_pids(i))
            self._reap(i)
            sysx.run(["ip", "netns", "del", name], check=False)
            with contextlib.suppress(FileNotFoundError):
                netns.unlink()
            sysx.run(["ip", "netns", "add", name])
        inside = sysx.run(["ip", "-n", name, "-o", "link", "show", "eth0"], check=False)
        if inside.returncode != 0 or not Path(f"/sys/class/net/{veth}").exists():
            sysx.run(["ip", "link", "del", veth], check=False)
            sysx.run(["ip", "-n", name, "link", "del", "eth0"], check=False)
            sysx.run(
                ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name]
            )
        sysx.run(["ip", "link", "set", veth, "master", self._site.bridge, "up"])
        sysx.run(
            [
                "ip",
                "-n",
                name,
                "addr",
                "replace",
                f"{self.node_address(i)}/{PREFIX_LEN}",
                "dev",
                "eth0",
            ]
        )
        sysx.run(["ip", "-n", name, "link", "set", "eth0", "up"])
        sysx.run(["ip", "-n", name, "link", "set", "lo", "up"])
        sysx.run(["ip", "-n", name, "route", "replace", "default", "via", self.host_address])

    def _daemon_pid(self, i: int) -> int | None:
        """The pid of node ``i``'s dockerd, if it runs."""
        exec_root = str(self._exec_root(i))
        pid = sysx.read_pidfile(self._pidfile(i))
        candidates = [pid] if pid else []
        candidates += sorted(sysx.find_pids(markers=[exec_root]))
        for candidate in candidates:
            args = sysx.cmdline(candidate)
            if (
                sysx.alive(candidate)
                and args
                and Path(args[0]).name == "dockerd"
                and exec_root in args
            ):
                return candidate
        return None

    def _answers(self, i: int, timeout: int = 3) -> bool:
        if not self._socket(i).exists():
            return False
        try:
            client = docker.DockerClient(
                base_url=self.node_host(i), version=API_VERSION, timeout=timeout
            )
        except DockerException:
            return False
        try:
            return bool(client.ping())
        except (DockerException, OSError):
            return False
        finally:
            client.close()

    def _daemon_problem(self, i: int) -> str | None:
        pid = self._daemon_pid(i)
        if pid is None:
            return f"{self.node_name(i)}: dockerd not running"
        if sysx.ns_id(f"/proc/{pid}/ns/net") != sysx.ns_id(self._netns(i)):
            return f"{self.node_name(i)}: dockerd runs outside its network namespace"
        if not self._answers(i):
            return f"{self.node_name(i)}: dockerd not answering"
        return None

    def _ensure_node(self, i: int) -> None:
        self._ensure_netns(i)
        if self._daemon_problem(i) is None:
            return
        self._start_daemon(i)

    def _flush_neighbours(self) -> None:
        """Forget the bridge's neighbours (host and nodes): a recreated node
        has new MAC addresses, and a stale entry costs a joining worker its
        first seconds ("i/o timeout" dialing the manager)."""
        sysx.run(["ip", "neigh", "flush", "dev", self._site.bridge], check=False)
        for i in self._indices():
            if self._is_nsfs(self._netns(i)):
                sysx.run(["ip", "-n", self.node_name(i), "neigh", "flush", "all"], check=False)

    def _engine_problem(self, i: int) -> str | None:
        """Node ``i`` was started with (or runs) another engine than it should."""
        wanted = self._wanted(i)
        recorded = self.node_engine(i)
        if recorded is not None and recorded != wanted.name:
            return f"{self.node_name(i)} runs engine {recorded}, not {wanted.name}"
        exe = self._daemon_exe(i)
        if exe is not None and exe != str(Path(wanted.dockerd).resolve()):
            return f"{self.node_name(i)} runs {exe}, not engine {wanted.name}"
        return None

    def _dockerd_args(self, i: int, engine: Engine) -> list[str]:
        return [
            engine.dockerd,
            "--config-file",
            str(self._node_dir(i) / "daemon.json"),
            "--data-root",
            str(self._data_root(i)),
            "--exec-root",
            str(self._exec_root(i)),
            "-H",
            self.node_host(i),
            "--pidfile",
            str(self._pidfile(i)),
            "--insecure-registry",
            self.registry,
            "--cgroup-parent",
            self._cgroup(i),
            "--label",
            f"zdd.lab.node={self.node_name(i)}",
        ]

    def _start_daemon(self, i: int) -> None:
        name = self.node_name(i)
        # Whatever is left of an earlier daemon goes first: processes, the
        # pidfile, runtime state (as after a reboot).
        sysx.kill_all(lambda: self._node_pids(i))
        self._reap(i)
        sysx.remove_tree(self._exec_root(i))
        self._socket(i).unlink(missing_ok=True)
        self._node_dir(i).mkdir(parents=True, exist_ok=True)
        (self._node_dir(i) / "daemon.json").write_text("{}\n")
        # A node keeps its engine (its data is that engine's); up() recreates
        # a node whose engine changes.
        engine = self._engine_cache.engine(self.node_engine(i) or self.engines[i - 1])
        self._engine_file(i).write_text(
            json.dumps({"engine": engine.name, "dockerd": engine.dockerd}) + "\n"
        )
        logfile = self._daemon_log(i)
        args = self._dockerd_args(i, engine)
        env = sysx.clean_env()
        env["PATH"] = engine.path(env["PATH"])
        command = [
            "nsenter",
            f"--net={self._netns(i)}",
            "unshare",
            "--uts",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            _NODE_SHELL,
            name,
            *args,
        ]
        self._progress(f"starting dockerd of {name} (engine {engine.name})")
        with open(logfile, "ab") as out:
            out.write(
                f"\n=== zdd-lab: starting {name} at {time.ctime()}: {' '.join(args)}\n".encode()
            )
            out.flush()
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        with self._procs_lock:
            self._procs[i] = proc

        def ready() -> bool:
            return proc.poll() is not None or self._answers(i, timeout=2)

        sysx.wait_for(ready, self.daemon_timeout, 0.1)
        if proc.poll() is not None:
            raise LabError(
                f"dockerd of {name} exited with {proc.returncode}; "
                f"{logfile} ends: {self._log_tail(logfile)}"
            )
        if not self._answers(i):
            raise LabError(
                f"dockerd of {name} does not answer after {self.daemon_timeout:.0f}s; "
                f"{logfile} ends: {self._log_tail(logfile)}"
            )

    @staticmethod
    def _log_tail(path: Path) -> str:
        """The last lines the latest start wrote to ``path``, on one line."""
        lines = sysx.tail(path, 40).splitlines()
        starts = [k for k, line in enumerate(lines) if line.startswith("=== zdd-lab:")]
        lines = [line.strip() for line in lines[starts[-1] + 1 if starts else 0 :] if line.strip()]
        return " | ".join(lines[-6:]) or "(empty)"

    def _reap(self, i: int) -> None:
        with self._procs_lock:
            proc = self._procs.pop(i, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)

    def _stop_node(self, i: int, grace: float = 1.0) -> None:
        """SIGTERM the daemon, SIGKILL whatever is left after ``grace`` s."""
        pid = self._daemon_pid(i)
        if pid is not None:
            sysx.terminate(pid, grace)
        sysx.kill_all(lambda: self._node_pids(i))
        self._reap(i)

    def _remove_node(self, i: int) -> None:
        self._stop_node(i)
        name = self.node_name(i)
        if self._netns(i).exists():
            sysx.run(["ip", "netns", "del", name], check=False)
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                self._netns(i).unlink()
        if Path(f"/sys/class/net/{self._veth(i)}").exists():
            sysx.run(["ip", "link", "del", self._veth(i)], check=False)
        sysx.remove_cgroups(self._cgroup(i).lstrip("/"))
        sysx.remove_tree(self._exec_root(i))
        self._socket(i).unlink(missing_ok=True)
        sysx.remove_tree(self._node_dir(i))

    # -- helpers: registry -----------------------------------------------------

    def _registry_client(self) -> RegistryClient:
        return RegistryClient(self.registry)

    def _registry_pid(self) -> int | None:
        marker = str(self._registry_config)
        pid = sysx.read_pidfile(self._registry_pidfile)
        candidates = [pid] if pid else []
        candidates += sorted(sysx.find_pids(markers=[marker]))
        for candidate in candidates:
            if sysx.alive(candidate) and marker in sysx.cmdline(candidate):
                return candidate
        return None

    def _ensure_registry(self) -> None:
        if self._registry_pid() is not None and self._registry_client().answers():
            return
        self._stop_registry()
        if sysx.port_in_use(self.host_address, REGISTRY_PORT):
            owners = sorted(sysx.listener_pids(REGISTRY_PORT))
            who = ", ".join(
                f"pid {p} ({' '.join(' '.join(sysx.cmdline(p)).split())[:60]})" for p in owners
            )
            raise LabError(
                f"port {REGISTRY_PORT} on {self.host_address} is taken by another "
                f"process{': ' + who if who else ''}; stop it and retry"
            )
        self._registry_storage.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._registry_config.write_text(
            "# written by zdd_swarm.lab\n"
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self._registry_storage}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.registry}\n  secret: zdd-lab-not-secret\n"
        )
        self._progress(f"starting the registry on {self.registry}")
        with open(self._registry_log, "ab") as out:
            proc = subprocess.Popen(
                ["docker-registry", "serve", str(self._registry_config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=sysx.clean_env(),
                start_new_session=True,
                close_fds=True,
            )
        self._registry_pidfile.write_text(f"{proc.pid}\n")
        with self._procs_lock:
            self._procs[0] = proc

    def _wait_registry(self, timeout: float = 15) -> None:
        client = self._registry_client()
        if not sysx.wait_for(client.answers, timeout, 0.1):
            raise LabError(
                f"the registry does not answer on {self.registry} after {timeout:.0f}s; "
                f"{self._registry_log} ends: {self._log_tail(self._registry_log)}"
            )

    def _stop_registry(self) -> None:
        pid = self._registry_pid()
        if pid is not None and not sysx.terminate(pid, 3):
            sysx.signal_pids([pid], signal.SIGKILL)
        sysx.kill_all(lambda: sysx.find_pids(markers=[str(self._registry_config)]))
        self._reap(0)
        self._registry_pidfile.unlink(missing_ok=True)

    # -- helpers: swarm --------------------------------------------------------

    def _swarm_info(self, i: int) -> dict[str, Any]:
        client = self.client(i, timeout=10)
        try:
            return dict(client.info().get("Swarm") or {})
        finally:
            client.close()

    def _swarm_problems(self) -> list[str]:
        try:
            manager = self._swarm_info(1)
            if manager.get("LocalNodeState") != "active" or not manager.get("ControlAvailable"):
                return [
                    f"{self.node_name(1)} is not a swarm manager ({manager.get('LocalNodeState')})"
                ]
            client = self.client(1, timeout=10)
            try:
                listed = client.api.nodes()
            finally:
                client.close()
        except (DockerException, OSError) as exc:
            return [f"swarm: {exc}"]
        problems = []
        by_host: dict[str, list[dict[str, Any]]] = {}
        for node in listed:
            by_host.setdefault(node.get("Description", {}).get("Hostname", "?"), []).append(node)
        expected = {self.node_name(i): i for i in self._indices()}
        for host, nodes in sorted(by_host.items()):
            if host not in expected:
                problems.append(f"swarm lists unknown node {host}")
            elif len(nodes) != 1:
                problems.append(f"swarm lists {host} {len(nodes)} times")
            else:
                node, i = nodes[0], expected[host]
                state = node.get("Status", {}).get("State")
                addr = node.get("Status", {}).get("Addr")
                if state != "ready":
                    problems.append(f"{host} is {state}")
                elif i != 1 and addr != self.node_address(i):
                    problems.append(f"{host} advertises {addr}")
                elif i != 1:
                    # The manager may still list a node that left a moment ago.
                    try:
                        own = self._swarm_info(i)
                    except (DockerException, OSError) as exc:
                        problems.append(f"{host}: {exc}")
                        continue
                    if own.get("LocalNodeState") != "active" or own.get("NodeID") != node["ID"]:
                        problems.append(
                            f"{host} is {own.get('LocalNodeState')} (not this swarm's member)"
                        )
        for host in expected:
            if host not in by_host:
                problems.append(f"{host} not in the swarm")
        return problems

    def _wait_settled(self, i: int, timeout: float) -> dict[str, Any]:
        """Node ``i``'s swarm info once it is not ``pending`` (or after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            info = self._swarm_info(i)
            if info.get("LocalNodeState") != "pending" or time.monotonic() > deadline:
                return info
            time.sleep(0.3)

    def _ensure_swarm(self) -> None:
        manager = self._wait_settled(1, 15)
        if manager.get("LocalNodeState") != "active" or not manager.get("ControlAvailable"):
            self._reset_swarm(f"{self.node_name(1)} is {manager.get('LocalNodeState')}")
            return
        if not self._join_workers(settle=True):
            return
        if not self._wait_ready(30):
            self._reset_swarm("nodes did not become Ready: " + "; ".join(self._swarm_problems()))

    def _join_workers(self, settle: bool) -> bool:
        """Make every worker a member of the manager's swarm; remove nodes the
        manager lists that are none of ours. False if the swarm was reset."""
        client = self.client(1)
        try:
            token = client.api.inspect_swarm()["JoinTokens"]["Worker"]
            members = {n["ID"] for n in client.api.nodes()}
        finally:
            client.close()
        workers = [i for i in self._indices() if i != 1]

        def join(i: int) -> str:
            info = self._wait_settled(i, 15) if settle else self._swarm_info(i)
            if info.get("LocalNodeState") == "active" and info.get("NodeID") in members:
                return str(info["NodeID"])
            worker = self.client(i)
            try:
                if info.get("LocalNodeState") not in (None, "inactive"):
                    self._leave(i, worker)
                self._progress(f"joining {self.node_name(i)} to the swarm")
                try:
                    worker.swarm.join(
                        remote_addrs=[f"{self.node_address(1)}:{SWARM_PORT}"],
                        join_token=token,
                        listen_addr=f"0.0.0.0:{SWARM_PORT}",
                        advertise_addr=self.node_address(i),
                    )
                except APIError as exc:
                    # The engine keeps trying after its own timeout.
                    if "continue in the background" not in str(exc):
                        raise
                    self._wait_settled(i, 30)
            finally:
                worker.close()
            return str(self._swarm_info(i).get("NodeID"))

        ours = set(self._parallel(join, workers))
        ours.add(str(self._swarm_info(1).get("NodeID")))
        client = self.client(1)
        try:
            for node in client.api.nodes():
                if node["ID"] not in ours:
                    host = node.get("Description", {}).get("Hostname")
                    self._progress(f"removing stale swarm node {host} ({node['ID'][:12]})")
                    with contextlib.suppress(APIError):
                        client.api.remove_node(node["ID"], force=True)
        finally:
            client.close()
        return True

    def _leave(self, i: int, client: Any) -> None:
        """``swarm leave --force``; if even that fails, wipe the node's swarm
        state and restart it."""
        try:
            client.swarm.leave(force=True)
        except APIError as exc:
            if "not part of a swarm" in str(exc):
                return
            self._progress(
                f"{self.node_name(i)}: swarm leave failed ({exc}); wiping its swarm state"
            )
            self._stop_node(i)
            sysx.remove_tree(self._data_root(i) / "swarm")
            self._start_daemon(i)

    def _reset_swarm(self, why: str) -> None:
        self._progress(f"initialising a new swarm ({why})")
        for i in self._indices():
            client = self.client(i)
            try:
                if self._swarm_info(i).get("LocalNodeState") != "inactive":
                    self._leave(i, client)
            finally:
                client.close()
        manager = self.client(1)
        try:
            manager.swarm.init(
                advertise_addr=self.node_address(1),
                listen_addr=f"0.0.0.0:{SWARM_PORT}",
                default_addr_pool=[ADDR_POOL],
                subnet_size=24,
            )
        finally:
            manager.close()
        self._join_workers(settle=False)
        if not self._wait_ready(30):
            raise LabError(
                "the swarm nodes are not Ready 30s after init: " + "; ".join(self._swarm_problems())
            )

    def _wait_ready(self, timeout: float) -> bool:
        return sysx.wait_for(lambda: not self._swarm_problems(), timeout, 0.3)

    # -- helpers: network and images ------------------------------------------

    def _network_ok(self) -> bool:
        client = self.client(1, timeout=10)
        try:
            for net in client.api.networks(names=[NETWORK]):
                if (
                    net.get("Name") == NETWORK
                    and net.get("Driver") == "overlay"
                    and net.get("Attachable")
                    and net.get("Scope") == "swarm"
                    and [c.get("Subnet") for c in (net.get("IPAM") or {}).get("Config") or []]
                    == [NETWORK_SUBNET]
                ):
                    return True
        finally:
            client.close()
        return False

    def _ensure_network(self) -> None:
        if self._network_ok():
            return
        client = self.client(1)
        try:
            for net in client.api.networks(names=[NETWORK]):
                if net.get("Name") == NETWORK:
                    client.api.remove_network(net["Id"])
            self._progress(f"creating the overlay network {NETWORK}")
            client.api.create_network(
                NETWORK,
                driver="overlay",
                attachable=True,
                labels={"zdd.lab": "1"},
                ipam=docker.types.IPAMConfig(
                    pool_configs=[docker.types.IPAMPool(subnet=NETWORK_SUBNET)]
                ),
            )
        finally:
            client.close()

    def _builder(self) -> ImageBuilder:
        return ImageBuilder(
            self._registry_client(),
            self.state_dir / "images.json",
            BUSYBOX,
            lambda: self.client(1, timeout=300),
            self._progress,
        )

    def _prometheus(self) -> LabPrometheus:
        builder = PrometheusImageBuilder(
            self._registry_client(),
            self.state_dir / "prometheus-image.json",
            BUSYBOX,
            lambda: self.client(1, timeout=300),
            self._progress,
        )
        return LabPrometheus(
            self.client, builder, self._socket(1), self.node_address(1), NETWORK, self._progress
        )

    def _router_builder(self) -> RouterImageBuilder:
        return RouterImageBuilder(
            self._registry_client(),
            self.state_dir / "router-images.json",
            BUSYBOX,
            lambda: self.client(1, timeout=300),
            self._progress,
            rootfs=rootfs_files,
        )
