"""examples/fabfile.py run with ``fab`` as a user would, against the lab's
manager reached over SSH.

A throwaway sshd (its own host key, client key and config in a temporary
directory) listens on 10.88.0.11:2222 inside the manager's network
namespace; its sessions get ``DOCKER_HOST`` of node 1's engine, so the
docker SDK's ``docker system dial-stdio`` on the "remote" reaches the lab's
manager. ``fab`` runs with ``HOME`` pointing at a temporary directory whose
``.ssh/config`` and ``.ssh/known_hosts`` name that key and host key: the
machine's own ``~/.ssh`` is never read or written.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .support import create_service, images_running

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SSH_PORT = 2222
SSHD = Path("/usr/sbin/sshd")
SSH_USER = "root"


@dataclass(frozen=True)
class SshManager:
    """The lab's manager as a remote host: where and how to log in."""

    user: str
    address: str
    port: int
    key: Path
    home: Path
    log: Path

    @property
    def target(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"


def _run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=True, **kwargs)


def _ensure_sshd() -> None:
    """Install openssh-server if sshd is missing, without letting the
    machine's own ssh service start (Debian's ``sshd_not_to_be_run``)."""
    if SSHD.exists():
        return
    if shutil.which("apt-get") is None:
        pytest.fail(
            f"{SSHD} is missing and there is no apt-get to install openssh-server", pytrace=False
        )
    Path("/etc/ssh").mkdir(exist_ok=True)
    Path("/etc/ssh/sshd_not_to_be_run").touch()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        _run("apt-get", "update", "-q", env=env, timeout=300)
        _run(
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "openssh-server",
            env=env,
            timeout=600,
        )
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"installing openssh-server failed: {exc.stderr.strip()[-500:]}", pytrace=False)


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def ssh_manager(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshManager]:
    """An sshd on the manager (10.88.0.11:2222, in its network namespace)
    whose sessions reach node 1's engine; stopped at the end of the module."""
    if importlib.util.find_spec("fabric") is None:
        pytest.fail("fabric is not installed (pip install fabric)", pytrace=False)
    _ensure_sshd()
    manager_netns = f"/var/run/netns/{lab.node_name(1)}"
    manager_address = lab.node_address(1)
    if _port_open(manager_address, SSH_PORT):
        pytest.fail(f"{manager_address}:{SSH_PORT} is already in use", pytrace=False)
    tmp = tmp_path_factory.mktemp("ssh")
    tmp.chmod(0o700)
    host_key, client_key = tmp / "ssh_host_ed25519_key", tmp / "id_ed25519"
    for key in (host_key, client_key):
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "zdd-lab", "-f", str(key))
    authorized_keys = _write(tmp / "authorized_keys", client_key.with_suffix(".pub").read_text())
    config = _write(
        tmp / "sshd_config",
        "\n".join(
            [
                f"Port {SSH_PORT}",
                f"ListenAddress {manager_address}",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized_keys}",
                f"PidFile {tmp / 'sshd.pid'}",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "LogLevel VERBOSE",
                f"SetEnv DOCKER_HOST={lab.docker_host}",
                "",
            ]
        ),
    )
    # sshd's privilege separation directory (the ssh unit creates it on Debian).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    try:
        _run(str(SSHD), "-t", "-f", str(config))
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"sshd rejects {config}: {exc.stderr.strip()}", pytrace=False)

    home = tmp / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    host_public = host_key.with_suffix(".pub").read_text().split()
    _write(
        home / ".ssh" / "known_hosts",
        f"[{manager_address}]:{SSH_PORT} {host_public[0]} {host_public[1]}\n",
    )
    _write(
        home / ".ssh" / "config",
        f"Host {manager_address}\n    IdentityFile {client_key}\n    IdentitiesOnly yes\n",
    )

    log = tmp / "sshd.log"
    with log.open("wb") as log_file:
        sshd = subprocess.Popen(
            ["nsenter", f"--net={manager_netns}", str(SSHD), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while not _port_open(manager_address, SSH_PORT):
            if sshd.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"sshd did not listen on {manager_address}:{SSH_PORT}: "
                    f"{log.read_text().strip()[-500:]}",
                    pytrace=False,
                )
            time.sleep(0.1)
        yield SshManager(SSH_USER, manager_address, SSH_PORT, client_key, home, log)
    finally:
        sshd.terminate()
        try:
            sshd.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sshd.kill()
            sshd.wait()


def fab(
    manager: SshManager, task: str, *args: str, timeout: float = 150
) -> subprocess.CompletedProcess[str]:
    """``fab -r examples -H user@manager:port -i KEY TASK ARGS`` with the
    temporary HOME, and no DOCKER_HOST: the engine is reached only over SSH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["HOME"] = str(manager.home)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fabric",
            "-r",
            "examples",
            "-H",
            manager.target,
            "-i",
            str(manager.key),
            task,
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.core
def test_fabfile_over_ssh(
    lab: Any, docker_client: Any, service_name: str, ssh_manager: SshManager
) -> None:
    v1, v2, crash = lab.image("v1"), lab.image("v2"), lab.image("crash")
    create_service(docker_client, lab, service_name, "v1", replicas=2)

    good = fab(ssh_manager, "deploy", "--service", service_name, "--image", v2)
    assert good.returncode == 0, good.stdout + good.stderr
    assert f"{service_name}: update batch 2: slot " in good.stdout
    assert f"{service_name}: completed (update_completed)" in good.stdout
    assert images_running(docker_client, service_name) == {v2}
    assert f"Accepted publickey for {SSH_USER}" in ssh_manager.log.read_text()

    back = fab(ssh_manager, "rollback", "--service", service_name)
    assert back.returncode == 0, back.stdout + back.stderr
    assert f"{service_name}: rolling back {v2} -> {v1}" in back.stdout
    assert f"{service_name}: completed (rollback_completed)" in back.stdout
    assert image_of(docker_client, service_name) == v1
    assert images_running(docker_client, service_name) == {v1}

    bad = fab(
        ssh_manager, "deploy", "--service", service_name, "--image", crash, "--task-deadline", "20s"
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"{service_name}: rolled_back (" in bad.stdout
    assert "rollback_started" in bad.stderr
    assert images_running(docker_client, service_name) == {v1}

    status = fab(ssh_manager, "status", "--service", service_name)
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.startswith(f"{service_name}: {v1} (version ")
    # the engine's own status of the rollback: "rollback_completed", or
    # "completed" when the replaced update's updater paused the service over
    # our rollback and the rollback's updater then completed it (swarmkit
    # updater.go; docs/reliability.md)
    recorded = "2/2 running; last update: rollback_completed" in status.stdout
    assert recorded or "2/2 running; last update: completed (update completed)" in status.stdout
    assert f"previous: {crash}" in status.stdout
    if not recorded:
        # The engine's record no longer says the last change was a rollback,
        # so nothing can refuse a second one (docs/reliability.md).
        return

    # After a rollback, Swarm's previous spec is the release that failed.
    again = fab(ssh_manager, "rollback", "--service", service_name)
    assert again.returncode == 2, again.stdout + again.stderr
    assert "not rolling back" in again.stderr
    assert image_of(docker_client, service_name) == v1


def image_of(client: Any, service: str) -> str:
    spec = client.api.inspect_service(service)["Spec"]
    return str(spec["TaskTemplate"]["ContainerSpec"]["Image"])
