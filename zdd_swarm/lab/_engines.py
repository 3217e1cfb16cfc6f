"""The Docker engines a lab node can run, and where their binaries come from.

``20.10`` is Debian 12's own ``docker.io`` (installed with apt-get like the
lab's other packages). ``28.5`` and ``26.1`` are Debian's newer ``docker.io``
and ``containerd`` packages, fetched with the ordinary apt client from the
mirror the machine's own apt sources already name (with another suite),
unpacked with ``dpkg -x`` into a cache folder and run from there. Their
``runc`` would need a newer glibc than Debian 12's, so the folder has none and
Debian 12's ``/usr/sbin/runc`` is used. A folder the user already has (with
``dockerd`` in it) works the same way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import LabError

__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "SYSTEM_ENGINE",
    "Engine",
    "EngineCache",
    "Release",
    "parse_engines",
]

SYSTEM_ENGINE = "20.10"
DEFAULT_ENGINE = "28.5"
#: Where, relative to an engine folder, dockerd and its helpers may be.
BIN_DIRS = ("usr/sbin", "usr/bin", "sbin", "bin", ".")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
STAMP = ".zdd-engine.json"


@dataclass(frozen=True)
class Release:
    """An engine the lab fetches from Debian: the package versions it needs
    and the suites that carry them (tried in order)."""

    docker: str
    containerd: str
    suites: tuple[str, ...]


#: Engine versions ``--engine`` knows, besides a folder.
ENGINES: dict[str, Release | None] = {
    "28.5": Release(docker="28.5.2", containerd="2.1.9", suites=("sid", "forky")),
    "26.1": Release(docker="26.1.5", containerd="1.7.24", suites=("trixie",)),
    SYSTEM_ENGINE: None,  # Debian 12's docker.io, from the machine's own apt sources
}


@dataclass(frozen=True)
class Engine:
    """The engine of one node: a known version or a folder of binaries."""

    #: ``28.5``, ``26.1``, ``20.10``, or the folder's absolute path
    name: str
    #: the folder holding ``dockerd``; None for the system's (Debian 12) dockerd
    folder: Path | None

    @property
    def bin_dirs(self) -> list[str]:
        """Directories to put first on the daemon's PATH."""
        if self.folder is None:
            return []
        return [
            str((self.folder / d).resolve())
            for d in BIN_DIRS
            if (self.folder / d).is_dir() and (d != "." or (self.folder / "dockerd").is_file())
        ]

    @property
    def dockerd(self) -> str:
        """The path of this engine's dockerd (it may not exist yet)."""
        if self.folder is None:
            return (
                shutil.which("dockerd", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/dockerd"
            )
        for d in BIN_DIRS:
            candidate = self.folder / d / "dockerd"
            if candidate.is_file():
                return str(candidate.resolve())
        return str(self.folder / "usr" / "sbin" / "dockerd")

    def path(self, rest: str) -> str:
        """A PATH with this engine's directories in front of ``rest``."""
        return ":".join([*self.bin_dirs, rest]) if self.bin_dirs else rest


def parse_engines(text: str, nodes: int | None) -> list[str]:
    """``28.5`` (every node), ``28.5,20.10,26.1`` (node by node, node 1 is
    the manager) or folders, into one normalised name per node. ``nodes``
    None: as many nodes as names (one name: None is returned as one name).
    Raises LabError for an unknown version or a count that does not fit."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise LabError(f"--engine {text!r}: empty engine name")
    names = [_normalise(item) for item in items]
    if len(names) == 1:
        return names * (nodes or 1)
    if nodes is not None and len(names) != nodes:
        raise LabError(
            f"--engine {text!r} names {len(names)} engines for {nodes} nodes: "
            "give one engine, or one per node"
        )
    return names


def _normalise(item: str) -> str:
    if item in ENGINES:
        return item
    if "/" in item or item.startswith("."):
        return str(Path(item).expanduser().resolve())
    known = ", ".join(sorted(ENGINES, key=lambda v: [int(p) for p in v.split(".")]))
    raise LabError(f"unknown engine {item!r}: use one of {known}, or a folder with dockerd in it")


class EngineCache:
    """Finds, or fetches and unpacks, the engines the lab runs.

    Fetched engines live in ``cache_dir`` (default
    ``/var/cache/zdd-lab/engines`` or ``$ZDD_LAB_CACHE_DIR/engines``), one
    folder per version, kept between runs.
    """

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        base = Path(cache_dir or os.environ.get("ZDD_LAB_CACHE_DIR") or "/var/cache/zdd-lab")
        self.dir = base / "engines"
        self._progress = progress or (lambda message: None)

    def engine(self, name: str) -> Engine:
        """The engine called ``name`` (no fetching: its folder may be empty)."""
        if name not in ENGINES:
            return Engine(name, Path(name))
        if ENGINES[name] is None:
            return Engine(name, None)
        return Engine(name, self.dir / name)

    def ensure(self, name: str) -> Engine:
        """The engine called ``name``, fetched and unpacked if needed. Raises
        LabError (one line) if it cannot be had."""
        engine = self.engine(name)
        release = ENGINES.get(name)
        if engine.folder is None:
            return engine
        if release is None:
            if not engine.folder.is_dir():
                raise LabError(f"engine folder {engine.folder} does not exist")
            if not os.access(engine.dockerd, os.X_OK):
                raise LabError(
                    f"engine folder {engine.folder} has no executable dockerd "
                    f"(looked in {', '.join(BIN_DIRS)})"
                )
            return engine
        stamp = {"docker": release.docker, "containerd": release.containerd}
        if self._stamp(name) == stamp and os.access(engine.dockerd, os.X_OK):
            return engine
        self._fetch(name, release)
        return engine

    def _stamp(self, name: str) -> dict[str, str] | None:
        try:
            value = json.loads((self.dir / name / STAMP).read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def _fetch(self, name: str, release: Release) -> None:
        uri, keyring = mirror()
        work = self.dir / f".apt-{name}"
        shutil.rmtree(work, ignore_errors=True)
        found: list[str] = []
        try:
            for suite in release.suites:
                debs = self._download(work / suite, uri, keyring, suite)
                versions = {pkg: _deb_field(path, "Version") for pkg, path in debs.items()}
                found.append(
                    f"{suite} has docker.io {versions['docker.io']}, "
                    f"containerd {versions['containerd']}"
                )
                if _is_version(versions["docker.io"], release.docker) and _is_version(
                    versions["containerd"], release.containerd
                ):
                    self._unpack(name, release, debs, suite)
                    return
            raise LabError(
                f"engine {name} needs docker.io {release.docker} and containerd "
                f"{release.containerd}, but the mirror's {'; '.join(found)}"
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _download(self, work: Path, uri: str, keyring: str, suite: str) -> dict[str, Path]:
        """``apt-get update`` and ``apt-get download`` of docker.io and
        containerd from ``suite``, with an apt configuration of its own."""
        for sub in ("lists/partial", "archives/partial", "cache", "debs"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        sources = work / "sources.list"
        sources.write_text(f"deb [signed-by={keyring}] {uri} {suite} main\n")
        options = [
            "-q",
            "-o",
            f"Dir::Etc::SourceList={sources}",
            "-o",
            "Dir::Etc::SourceParts=/dev/null",
            "-o",
            f"Dir::State::Lists={work / 'lists'}",
            "-o",
            f"Dir::Cache={work / 'cache'}",
            "-o",
            f"Dir::Cache::archives={work / 'archives'}",
            "-o",
            "APT::Sandbox::User=root",
        ]
        self._progress(f"fetching the package lists of Debian {suite}")
        _apt([*options, "update"], cwd=work, what=f"the package lists of Debian {suite}")
        self._progress(f"downloading docker.io and containerd from Debian {suite}")
        _apt(
            [*options, "download", "docker.io", "containerd"],
            cwd=work / "debs",
            what=f"docker.io and containerd from Debian {suite}",
        )
        debs: dict[str, Path] = {}
        for path in sorted((work / "debs").glob("*.deb")):
            debs[_deb_field(path, "Package")] = path
        missing = {"docker.io", "containerd"} - set(debs)
        if missing:
            raise LabError(f"apt-get download from Debian {suite} gave no {', '.join(missing)}")
        return debs

    def _unpack(self, name: str, release: Release, debs: dict[str, Path], suite: str) -> None:
        folder = self.dir / name
        partial = self.dir / f".{name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for path in debs.values():
            _run(["dpkg", "-x", str(path), str(partial)], what=f"unpacking {path.name}")
        # Debian 12's runc is used (a newer one needs a newer glibc).
        for runc in partial.rglob("runc*"):
            if runc.is_file() and runc.name in ("runc", "runc.amd64"):
                runc.unlink()
        (partial / STAMP).write_text(
            json.dumps({"docker": release.docker, "containerd": release.containerd}) + "\n"
        )
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
        self._progress(f"engine {name} (docker.io {release.docker}, from {suite}) in {folder}")


def mirror(etc: Path = Path("/etc/apt")) -> tuple[str, str]:
    """The URI of the Debian archive the machine's apt sources name (not the
    security archive), and the keyring to check it with. Read each time,
    never stored."""
    candidates = [
        (uri, keyring)
        for uri, suites, keyring in _source_entries(etc)
        if "security" not in uri and any(s and "security" not in s for s in suites)
    ]
    # The Debian archive's path ends in /debian on deb.debian.org and its mirrors.
    candidates.sort(key=lambda c: not c[0].rstrip("/").endswith("/debian"))
    if candidates:
        uri, keyring = candidates[0]
        return uri, keyring or KEYRING
    raise LabError(
        "no Debian archive found in the machine's apt sources "
        "(/etc/apt/sources.list, /etc/apt/sources.list.d/): cannot fetch newer engines"
    )


def _source_entries(etc: Path) -> list[tuple[str, list[str], str | None]]:
    """(uri, suites, signed-by) of every ``deb`` source line or stanza."""
    found: list[tuple[str, list[str], str | None]] = []
    lists = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]
    for path in lists:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.split("#", 1)[0].strip()
            match = re.fullmatch(r"deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)(\s+.*)?", line)
            if match:
                options = match.group(1) or ""
                signed = re.search(r"signed-by=(\S+?)\]?(\s|$)", options)
                found.append(
                    (match.group(2), [match.group(3)], signed.group(1) if signed else None)
                )
    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        try:
            text = path.read_text()
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            signed_by = fields.get("signed-by")
            keyring = signed_by if signed_by and signed_by.startswith("/") else None
            for uri in fields.get("uris", "").split():
                found.append((uri, fields.get("suites", "").split(), keyring))
    return found


def _is_version(debian_version: str, upstream: str) -> bool:
    """``28.5.2+dfsg4-5`` is version ``28.5.2`` (an epoch is ignored)."""
    version = debian_version.split(":", 1)[-1]
    return version == upstream or re.match(re.escape(upstream) + r"[~+-]", version) is not None


def _deb_field(path: Path, field: str) -> str:
    return _run(["dpkg-deb", "-f", str(path), field], what=f"reading {path.name}").stdout.strip()


def _apt(args: Sequence[str], cwd: Path, what: str) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", *args], what=f"fetching {what}", cwd=cwd, env=env, timeout=900)


def _run(
    args: Sequence[str],
    what: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            cwd=cwd,
            env=env,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise LabError(f"{what}: command not found: {args[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{what}: `{args[0]}` did not finish within {timeout:.0f}s") from exc
    if proc.returncode != 0:
        lines = [
            line
            for line in (proc.stderr.strip() or proc.stdout.strip()).splitlines()
            if not line.startswith("W:")
        ]
        raise LabError(
            f"{what} failed (`{args[0]}` exit {proc.returncode}): "
            f"{lines[-1] if lines else 'no output'}"
        )
    return proc
