"""The router images' files: which libraries ``ldd`` names, at which paths."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from zdd_swarm.lab import _router_files
from zdd_swarm.lab.errors import LabError

LDD = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tliblua5.3.so.0 => /cache/root/usr/lib/x86_64-linux-gnu/liblua5.3.so.0 (0x00007f01)
\tlibssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x00007f02)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f03)
"""


def fake_ldd(monkeypatch: pytest.MonkeyPatch, out: str) -> None:
    def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 0, out, "")

    monkeypatch.setattr(_router_files.subprocess, "run", run)


def test_each_library_goes_where_the_binary_loads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_ldd(monkeypatch, LDD)
    found = dict(_router_files._libraries(Path("/cache/root/usr/sbin/haproxy"), Path("/c")))
    assert found == {
        "lib/x86_64-linux-gnu/liblua5.3.so.0": Path(
            "/cache/root/usr/lib/x86_64-linux-gnu/liblua5.3.so.0"
        ),
        "lib/x86_64-linux-gnu/libssl.so.3": Path("/lib/x86_64-linux-gnu/libssl.so.3"),
        "lib64/ld-linux-x86-64.so.2": Path("/lib64/ld-linux-x86-64.so.2"),
    }


def test_a_library_not_found_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_ldd(monkeypatch, "\tlibfoo.so.1 => not found\n")
    with pytest.raises(LabError, match=r"haproxy needs libfoo\.so\.1"):
        _router_files._libraries(Path("/c/usr/sbin/haproxy"), Path("/c"))


def test_the_prometheus_image_gets_debians_binary_and_its_libraries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[Path, tuple[str, ...], tuple[str, ...]]] = []

    def rootfs(cache: Path, packages: tuple[str, ...], binaries: tuple[str, ...]) -> Any:
        seen.append((cache, packages, binaries))
        return {}

    monkeypatch.setattr(_router_files, "rootfs_files", rootfs)
    _router_files.prometheus_rootfs()
    assert seen == [(_router_files.PROMETHEUS_CACHE, ("prometheus",), ("usr/bin/prometheus",))]
