"""The lab's test images: built from the host's static busybox on the
manager's engine (legacy builder) and pushed to the lab registry.

One build context (``images/app`` plus ``/bin/busybox``) gives every tag:
``--build-arg TAG=<tag> --target <stage>``. A stamp file records the hash of
the context and the digests pushed; when the hash is unchanged and the
registry still serves those digests, nothing is built.

The routers (``zdd-router:nginx``, ``zdd-router:haproxy``) are a second
context (``images/router``) built the same way, with the binaries of
Debian's nginx and haproxy packages and the shared libraries they load
(``_router_files.py``).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .errors import LabError

__all__ = [
    "REPOSITORY",
    "ROUTER_REPOSITORY",
    "ROUTER_TAGS",
    "TAGS",
    "ImageBuilder",
    "RegistryClient",
    "RouterImageBuilder",
]

REPOSITORY = "zdd-app"

#: tag -> Dockerfile stage. What each tag does is described in app.sh and docs/lab.md.
TAGS: Mapping[str, str] = {
    "v1": "healthcheck",
    "v2": "healthcheck",
    "v3": "healthcheck",
    "crash": "healthcheck",
    "unhealthy": "healthcheck",
    "sick": "healthcheck",
    "abrupt": "healthcheck",
    "flaky": "healthcheck",
    "slow": "slow-start",
    "slow-nohc": "no-healthcheck",
    "nohc": "no-healthcheck",
}

#: tag -> Dockerfile stage of the routers (images/router).
ROUTER_REPOSITORY = "zdd-router"
ROUTER_TAGS: Mapping[str, str] = {"nginx": "nginx", "haproxy": "haproxy"}

_FORMAT = "zdd-lab-images/1"
_MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def context_source(name: str = "app") -> Path:
    """A build context shipped with the package."""
    return Path(__file__).resolve().parent / "images" / name


class RegistryClient:
    """The few registry API (v2) calls the lab needs, over plain HTTP and
    never through a proxy."""

    def __init__(self, address: str, timeout: float = 3) -> None:
        self.address = address
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _request(self, path: str, method: str = "GET") -> tuple[int, Mapping[str, str], bytes]:
        req = urllib.request.Request(
            f"http://{self.address}{path}", method=method, headers={"Accept": _MANIFEST_TYPES}
        )
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers.items()), b""

    def answers(self) -> bool:
        try:
            return self._request("/v2/")[0] == 200
        except OSError:
            return False

    def manifest_digest(self, repository: str, tag: str) -> str | None:
        try:
            status, headers, _ = self._request(f"/v2/{repository}/manifests/{tag}", "HEAD")
        except OSError:
            return None
        if status != 200:
            return None
        lowered = {k.lower(): v for k, v in headers.items()}
        return lowered.get("docker-content-digest")

    def tags(self, repository: str) -> list[str]:
        try:
            status, _, body = self._request(f"/v2/{repository}/tags/list")
        except OSError:
            return []
        if status != 200:
            return []
        found = json.loads(body or b"{}").get("tags") or []
        return [str(t) for t in found]


class ImageBuilder:
    """Builds and pushes the test images, or finds them already pushed."""

    repository = REPOSITORY
    tags = TAGS
    source = "app"

    def __init__(
        self,
        registry: RegistryClient,
        stamp: Path,
        busybox: Path,
        client_factory: Callable[[], Any],
        progress: Callable[[str], None],
    ) -> None:
        self.registry = registry
        self.stamp = stamp
        self.busybox = busybox
        self.client_factory = client_factory
        self.progress = progress

    def reference(self, tag: str) -> str:
        return f"{self.registry.address}/{self.repository}:{tag}"

    # -- the context -----------------------------------------------------------

    def context(self) -> tuple[bytes, str]:
        """A deterministic tar of the build context and its hash (which also
        covers the tag table)."""
        files: dict[str, tuple[bytes, int]] = {}
        for path in sorted(context_source(self.source).iterdir()):
            if path.is_file() and not path.name.startswith("."):
                files[path.name] = (path.read_bytes(), 0o644)
        try:
            files["busybox"] = (self.busybox.read_bytes(), 0o755)
        except OSError as exc:
            raise LabError(
                f"cannot read {self.busybox} (Debian package busybox-static): {exc}"
            ) from exc
        files.update(self.extra_files())
        buf = io.BytesIO()
        digest = hashlib.sha256(_FORMAT.encode())
        digest.update(json.dumps(dict(self.tags), sort_keys=True).encode())
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name in sorted(files):
                data, mode = files[name]
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), mode, 0
                tar.addfile(info, io.BytesIO(data))
                digest.update(name.encode() + b"\0" + data)
        return buf.getvalue(), digest.hexdigest()

    def extra_files(self) -> dict[str, tuple[bytes, int]]:
        """More files of the context: path -> (content, mode)."""
        return {}

    # -- the stamp -------------------------------------------------------------

    def _read_stamp(self) -> dict[str, Any]:
        try:
            data = json.loads(self.stamp.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def current(self, context_hash: str | None = None) -> dict[str, str] | None:
        """The pushed digests (tag -> digest) if the registry still serves
        exactly what the stamp says for this context, else None."""
        if context_hash is None:
            context_hash = self.context()[1]
        stamp = self._read_stamp()
        digests = stamp.get("digests")
        if stamp.get("hash") != context_hash or stamp.get("registry") != self.registry.address:
            return None
        if not isinstance(digests, dict) or set(digests) != set(self.tags):
            return None
        for tag, digest in digests.items():
            if self.registry.manifest_digest(self.repository, tag) != digest:
                return None
        return {str(k): str(v) for k, v in digests.items()}

    # -- build and push --------------------------------------------------------

    def ensure(self) -> dict[str, str]:
        """Make sure every tag is in the registry; return tag -> reference."""
        tar, context_hash = self.context()
        if self.current(context_hash) is None:
            digests = self._build_and_push(tar, context_hash)
            self.stamp.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.stamp.with_suffix(".tmp")
            tmp.write_text(
                json.dumps(
                    {"hash": context_hash, "registry": self.registry.address, "digests": digests},
                    indent=1,
                    sort_keys=True,
                )
                + "\n"
            )
            tmp.replace(self.stamp)
        return {tag: self.reference(tag) for tag in self.tags}

    def _build_and_push(self, tar: bytes, context_hash: str) -> dict[str, str]:
        self.progress(f"building {len(self.tags)} {self.repository} images on the manager")
        tags = list(self.tags)
        # The first build makes the shared layers; the rest only add metadata
        # steps on top of the cached ones, and run side by side.
        self._build(tar, tags[0], context_hash)
        with ThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(lambda tag: self._build(tar, tag, context_hash), tags[1:]))
        self._prune()
        self.progress(f"pushing them to {self.registry.address}")
        with ThreadPoolExecutor(max_workers=4) as pool:
            digests = dict(zip(self.tags, pool.map(self._push, self.tags), strict=True))
        return digests

    def _build(self, tar: bytes, tag: str, context_hash: str) -> None:
        client = self.client_factory()
        log: list[str] = []
        try:
            stream = client.api.build(
                fileobj=io.BytesIO(tar),
                custom_context=True,
                tag=self.reference(tag),
                buildargs={"TAG": tag},
                target=self.tags[tag],
                rm=True,
                forcerm=True,
                decode=True,
                labels={"zdd.lab.context": context_hash[:16]},
                use_config_proxy=False,
            )
            for chunk in stream:
                if "error" in chunk:
                    detail = str(chunk.get("error")).strip()
                    raise LabError(
                        f"building {self.reference(tag)} failed: {detail} "
                        f"(last output: {' | '.join(log[-3:])})"
                    )
                text = str(chunk.get("stream", "")).strip()
                if text:
                    log.append(text)
        finally:
            client.close()

    def _prune(self) -> None:
        """Remove the untagged images of stages built on the way to a target."""
        client = self.client_factory()
        try:
            client.api.prune_images(filters={"dangling": True})
        except Exception:  # tidying only
            pass
        finally:
            client.close()

    def _push(self, tag: str) -> str:
        client = self.client_factory()
        digest = ""
        try:
            repo = f"{self.registry.address}/{self.repository}"
            for chunk in client.api.push(repo, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    raise LabError(f"pushing {repo}:{tag} failed: {chunk['error']}")
                aux = chunk.get("aux")
                if isinstance(aux, dict) and aux.get("Digest"):
                    digest = str(aux["Digest"])
        finally:
            client.close()
        if not digest:
            digest = self.registry.manifest_digest(self.repository, tag) or ""
        if not digest:
            raise LabError(f"pushed {self.reference(tag)} but the registry does not list it")
        return digest


class RouterImageBuilder(ImageBuilder):
    """The routers' images: nginx and HAProxy from Debian's packages."""

    repository = ROUTER_REPOSITORY
    tags = ROUTER_TAGS
    source = "router"

    def __init__(self, *args: Any, rootfs: Callable[[], dict[str, tuple[bytes, int]]]) -> None:
        super().__init__(*args)
        self._rootfs = rootfs

    def extra_files(self) -> dict[str, tuple[bytes, int]]:
        return self._rootfs()
