"""A TLS engine (``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``), as users of a
remote manager on tcp://...:2376 run it.

The lab's manager listens on a unix socket; a mutual-TLS front on loopback
(server certificate for 127.0.0.1, client certificates required, both signed
by a test CA) forwards to it byte for byte, so the docker SDK speaks real
TLS to a real engine."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .support import create_service

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _write_pair(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_name = "key.pem" if stem == "cert" else f"{stem}-key.pem"
    (directory / key_name).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_pki(directory: Path, ca_name: str = "zdd test CA") -> None:
    """ca.pem; server.pem / server-key.pem (127.0.0.1); cert.pem / key.pem (client):
    the file names the docker SDK looks for in DOCKER_CERT_PATH."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_subject)
        .issuer_name(ca_subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for stem, usage in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("cert", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)]))
            .issuer_name(ca_subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if stem == "server":
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        _write_pair(directory, stem, builder.sign(ca_key, hashes.SHA256()), key)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def tls_engine(lab: Any, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(DOCKER_HOST, DOCKER_CERT_PATH) of the lab's manager behind mutual TLS."""
    make_pki(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server-key.pem")
    context.load_verify_locations(tmp_path / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    unix_path = lab.docker_host.removeprefix("unix://")
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                conn = context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                raw.close()
                continue
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(unix_path)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{port}", tmp_path
    finally:
        stop.set()
        listener.close()


def run_cli(host: str, cert_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_HOST=host, DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(cert_path))
    # a CA bundle for other HTTPS traffic, as many machines set: requests
    # would prefer it to DOCKER_CERT_PATH's ca.pem
    unrelated = cert_path.parent / "unrelated-ca"
    if not unrelated.exists():
        unrelated.mkdir()
        make_pki(unrelated, ca_name="an unrelated CA")
    env.update(
        REQUESTS_CA_BUNDLE=str(unrelated / "ca.pem"), CURL_CA_BUNDLE=str(unrelated / "ca.pem")
    )
    return subprocess.run(
        [sys.executable, "-m", "zdd_swarm", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_update_over_tls_with_the_sdks_own_settings(
    lab: Any, docker_client: Any, service_name: str, tls_engine: tuple[str, Path]
) -> None:
    host, cert_path = tls_engine
    create_service(docker_client, lab, service_name, "v1", replicas=2)
    proc = run_cli(host, cert_path, "update", service_name, "--image", lab.image("v2"), "--json")
    assert proc.returncode == 0, (proc.stdout, proc.stderr[-2000:])
    assert json.loads(proc.stdout)["image_after"] == lab.image("v2")


def test_tls_with_an_unknown_ca_is_refused_clearly(
    lab: Any, docker_client: Any, service_name: str, tmp_path: Path, tls_engine: tuple[str, Path]
) -> None:
    host, _ = tls_engine
    other = tmp_path / "other-ca"
    other.mkdir()
    make_pki(other, ca_name="some other CA")
    create_service(docker_client, lab, service_name, "v1", replicas=1)
    version = docker_client.api.inspect_service(service_name)["Version"]["Index"]
    proc = run_cli(host, other, "update", service_name, "--image", lab.image("v2"))
    assert proc.returncode == 5, (proc.stdout, proc.stderr[-2000:])
    assert "certificate" in proc.stderr.lower() or "ssl" in proc.stderr.lower(), proc.stderr
    assert "Traceback" not in proc.stderr
    assert docker_client.api.inspect_service(service_name)["Version"]["Index"] == version
