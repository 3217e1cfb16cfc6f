"""Small Linux helpers for the lab: commands, processes, namespaces, mounts.

Everything here works on the host through ``/proc``, ``/sys`` and the ``ip``,
``iptables``, ``nsenter``, ``unshare`` and ``umount`` commands; nothing needs a
library beyond the standard one.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

from .errors import LabError

_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def clean_env() -> dict[str, str]:
    """The environment for lab commands and daemons: no proxy settings (the
    lab's registry and nodes are local addresses) and a PATH with sbin."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env["PATH"] = SYSTEM_PATH + (":" + env["PATH"] if env.get("PATH") else "")
    env.pop("DOCKER_HOST", None)
    return env


def run(
    args: Sequence[str], *, check: bool = True, timeout: float = 60, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output; raise LabError if ``check`` and it
    fails (the message has the command and its stderr)."""
    try:
        proc = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=clean_env(),
            input=input_text,
            check=False,
        )
    except FileNotFoundError as exc:
        raise LabError(f"command not found: {args[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(args)}` did not finish within {timeout:.0f}s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise LabError(
            f"`{' '.join(args)}` failed (exit {proc.returncode}): "
            f"{detail[-1] if detail else 'no output'}"
        )
    return proc


def which(name: str) -> str | None:
    return shutil.which(name, path=SYSTEM_PATH + ":" + os.environ.get("PATH", ""))


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# -- processes -----------------------------------------------------------------


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def ns_id(path: str | Path) -> tuple[int, int] | None:
    """(device, inode) of a namespace file (``/proc/PID/ns/net``,
    ``/run/netns/NAME``), or None if it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def cgroup_paths(pid: int) -> list[str]:
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return []
    return [line.split(":", 2)[2] for line in lines if line.count(":") >= 2]


def read_pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def find_pids(
    *, netns: Path | None = None, markers: Iterable[str] = (), cgroup: str | None = None
) -> set[int]:
    """Processes that are in network namespace ``netns``, or have an argument
    equal to or under one of ``markers`` (paths), or live in cgroup ``cgroup``
    or below it. Never this process."""
    target = ns_id(netns) if netns is not None else None
    marks = tuple(markers)
    found: set[int] = set()
    me = os.getpid()
    for pid in all_pids():
        if pid == me:
            continue
        if target is not None and ns_id(f"/proc/{pid}/ns/net") == target:
            found.add(pid)
            continue
        if marks and any(_arg_matches(arg, marks) for arg in cmdline(pid)):
            found.add(pid)
            continue
        if cgroup is not None and any(
            p == cgroup or p.startswith(cgroup + "/") for p in cgroup_paths(pid)
        ):
            found.add(pid)
    return found


def _arg_matches(arg: str, marks: tuple[str, ...]) -> bool:
    for mark in marks:
        for value in (arg, arg.split("=", 1)[-1], arg.removeprefix("unix://")):
            if value == mark or value.startswith(mark + "/"):
                return True
    return False


def signal_pids(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


#: Processes that kill_all waits to see reaped (so that `pgrep dockerd` etc.
#: are clean when it returns); a container's processes are not waited for.
DAEMONS = ("dockerd", "containerd", "containerd-shim", "docker-registry")


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def kill_all(find: Callable[[], set[int]], *, timeout: float = 10, reaped: float = 3) -> None:
    """SIGKILL whatever ``find`` returns until it returns nothing (processes
    may fork while we kill them), then wait up to ``reaped`` s for the
    daemons among them to be reaped (ours here, orphans by init), so that
    they vanish from ``ps``."""
    deadline = time.monotonic() + timeout
    dead: set[int] = set()
    while True:
        pids = {p for p in find() if alive(p)}
        if not pids:
            break
        if time.monotonic() > deadline:
            raise LabError(f"processes survive SIGKILL: {sorted(pids)}")
        dead |= {p for p in pids if comm(p).startswith(DAEMONS)}
        signal_pids(pids, signal.SIGKILL)
        wait_for(functools.partial(_all_gone, frozenset(pids), False), 2, 0.02)
    if dead:
        wait_for(functools.partial(_all_gone, frozenset(dead), True), reaped, 0.05)


def _all_gone(pids: frozenset[int], reaped: bool) -> bool:
    """No pid of ``pids`` alive (``reaped``: not even as a zombie). Reaps
    those that are children of this process."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
    if reaped:
        return not any(os.path.exists(f"/proc/{p}") for p in pids)
    return not any(alive(p) for p in pids)


def terminate(pid: int, timeout: float, reaped: float = 3) -> bool:
    """SIGTERM ``pid`` and wait up to ``timeout`` s for it to exit (and up to
    ``reaped`` s more to be reaped); True if it exited."""
    signal_pids([pid], signal.SIGTERM)
    pids = frozenset([pid])
    if not wait_for(functools.partial(_all_gone, pids, False), timeout, 0.05):
        return False
    wait_for(functools.partial(_all_gone, pids, True), reaped, 0.05)
    return True


# -- mounts, cgroups, files ----------------------------------------------------


def _unescape_mount(path: str) -> str:
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, char)
    return path


def mounts_under(roots: Iterable[Path]) -> list[str]:
    """Mount points (this mount namespace) at or under any of ``roots``,
    deepest first."""
    tops = [str(r).rstrip("/") for r in roots]
    found: list[str] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        point = _unescape_mount(fields[4])
        if any(point == t or point.startswith(t + "/") for t in tops):
            found.append(point)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def unmount_under(roots: Iterable[Path]) -> None:
    """Unmount everything at or under ``roots`` (deepest first; lazily when a
    plain unmount fails)."""
    roots = list(roots)
    for _ in range(3):
        points = mounts_under(roots)
        if not points:
            return
        for point in points:
            if run(["umount", point], check=False, timeout=20).returncode != 0:
                run(["umount", "-l", point], check=False, timeout=20)


def remove_tree(path: Path) -> None:
    """``rm -rf`` after unmounting whatever is mounted below ``path``."""
    if not path.exists() and not path.is_symlink():
        return
    unmount_under([path])
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():
            # A busy leftover (e.g. a mount another namespace still holds).
            run(["rm", "-rf", "--one-file-system", str(path)], check=False)
    else:
        path.unlink(missing_ok=True)


def remove_cgroups(name: str) -> None:
    """Remove the (empty) cgroup directories ``/<name>`` in every hierarchy,
    children first."""
    base = Path("/sys/fs/cgroup")
    candidates = [base / name]
    with contextlib.suppress(OSError):
        candidates += [d / name for d in base.iterdir() if d.is_dir() and not d.is_symlink()]
    for top in candidates:
        if not top.is_dir():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in [*dirs, top]:
            with contextlib.suppress(OSError):
                d.rmdir()


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.rstrip().splitlines()[-lines:])


# -- sockets -------------------------------------------------------------------


def port_in_use(address: str, port: int) -> bool:
    """True if binding a TCP socket to ``address:port`` fails because
    something already listens there."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
    except OSError as exc:
        return exc.errno == errno.EADDRINUSE
    finally:
        sock.close()
    return False


def listener_pids(port: int) -> set[int]:
    """Processes holding a listening TCP socket on ``port`` (any address)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    pids: set[int] = set()
    for pid in all_pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                pids.add(pid)
                break
    return pids


# -- binaries ------------------------------------------------------------------


def is_static_elf(path: str | Path) -> bool:
    """True if ``path`` is an ELF executable without a program interpreter
    (statically linked)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF":
                return False
            is64 = head[4] == 2
            order: Literal["little", "big"] = "little" if head[5] == 1 else "big"
            if is64:
                phoff = int.from_bytes(head[32:40], order)
                phentsize = int.from_bytes(head[54:56], order)
                phnum = int.from_bytes(head[56:58], order)
            else:
                phoff = int.from_bytes(head[28:32], order)
                phentsize = int.from_bytes(head[42:44], order)
                phnum = int.from_bytes(head[44:46], order)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    for k in range(phnum):
        p_type = int.from_bytes(table[k * phentsize : k * phentsize + 4], order)
        if p_type == 3:  # PT_INTERP
            return False
    return True
