"""The routers' (and the lab Prometheus') binaries from Debian's packages,
for the lab's images.

``apt-get download`` fetches Debian's ``nginx`` and ``haproxy`` (and the
libraries of HAProxy a machine rarely has) into a cache folder with the
machine's own apt sources; ``dpkg -x`` unpacks them there. Nothing is
installed, so no nginx or HAProxy starts on the machine. ``ldd`` then names
every shared library each binary loads, found in the unpacked packages or
on the machine, and the image gets those files at the paths it loads them
from (as the app image gets busybox).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from .errors import LabError

__all__ = ["PACKAGES", "PROMETHEUS_CACHE", "prometheus_rootfs", "rootfs_files"]

CACHE = Path("/var/cache/zdd-lab/routers")
PROMETHEUS_CACHE = Path("/var/cache/zdd-lab/prometheus")
#: packages unpacked for the images (never installed)
PACKAGES = ("nginx", "haproxy", "liblua5.3-0", "libopentracing-c-wrapper0", "libopentracing1")
BINARIES = ("usr/sbin/nginx", "usr/sbin/haproxy")
_LDD_LINE = re.compile(r"^\s*(?:(\S+) => )?(/\S+) \(0x[0-9a-f]+\)$")


def _apt(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, env=env, check=False, timeout=600
    )


def _fetch(
    cache: Path, packages: tuple[str, ...] = PACKAGES, binaries: tuple[str, ...] = BINARIES
) -> Path:
    """The unpacked packages (fetched and unpacked once)."""
    root = cache / "root"
    if all((root / b).is_file() for b in binaries):
        return root
    cache.mkdir(parents=True, exist_ok=True)
    download = ["apt-get", "download", "-q", *packages]
    proc = _apt(download, cache)
    if proc.returncode != 0:  # no package lists yet: a fresh machine
        _apt(["apt-get", "update", "-q"], cache)
        proc = _apt(download, cache)
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise LabError(f"`{' '.join(download)}` failed: {lines[-1] if lines else 'no output'}")
    tmp = cache / "root.tmp"
    subprocess.run(["rm", "-rf", str(tmp)], check=True)
    for deb in sorted(cache.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(tmp)], check=True, capture_output=True)
    subprocess.run(["rm", "-rf", str(root)], check=True)
    tmp.replace(root)
    return root


def _libraries(binary: Path, root: Path) -> list[tuple[str, Path]]:
    """(path in the image, file on this machine) of every library ``binary`` loads."""
    libdirs = [str(root / d) for d in ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")]
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(libdirs))
    out = subprocess.run(
        ["ldd", str(binary)], capture_output=True, text=True, env=env, check=False
    ).stdout
    missing = [line.split()[0] for line in out.splitlines() if "not found" in line]
    if missing:
        raise LabError(f"{binary.name} needs {', '.join(missing)}: not found on this machine")
    found = []
    for line in out.splitlines():
        match = _LDD_LINE.match(line)
        if match:
            soname, path = match.group(1), Path(match.group(2))
            # loaded by the name the binary asks for, from the standard folder
            target = f"lib/x86_64-linux-gnu/{soname}" if soname else str(path).lstrip("/")
            found.append((target, path))
    return found


def rootfs_files(
    cache: Path = CACHE, packages: tuple[str, ...] = PACKAGES, binaries: tuple[str, ...] = BINARIES
) -> dict[str, tuple[bytes, int]]:
    """``rootfs/<path>`` -> (content, mode): the binaries and their libraries."""
    root = _fetch(cache, packages, binaries)
    files: dict[str, tuple[bytes, int]] = {}
    for binary in binaries:
        files[f"rootfs/{binary}"] = ((root / binary).read_bytes(), 0o755)
        for target, path in _libraries(root / binary, root):
            files[f"rootfs/{target}"] = (path.resolve().read_bytes(), 0o755)
    return files


def prometheus_rootfs() -> dict[str, tuple[bytes, int]]:
    """The files of the lab Prometheus' image: Debian's ``prometheus``."""
    return rootfs_files(PROMETHEUS_CACHE, ("prometheus",), ("usr/bin/prometheus",))
