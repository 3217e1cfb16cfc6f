"""The lab's engine choice: parsing ``--engine``, package versions, and
finding the Debian archive in the machine's apt sources (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zdd_swarm.lab import LabError
from zdd_swarm.lab._engines import EngineCache, _is_version, mirror, parse_engines


def test_one_engine_for_every_node_or_one_per_node() -> None:
    assert parse_engines("28.5", 3) == ["28.5", "28.5", "28.5"]
    assert parse_engines("28.5,20.10,26.1", 3) == ["28.5", "20.10", "26.1"]
    assert parse_engines(" 26.1 , 20.10 ", None) == ["26.1", "20.10"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("27.0", "unknown engine '27.0'"),
        ("28.5,20.10", "names 2 engines for 3 nodes"),
        ("28.5,,26.1", "empty engine name"),
        ("", "empty engine name"),
    ],
)
def test_bad_engine_is_refused_in_one_line(text: str, says: str) -> None:
    with pytest.raises(LabError, match=says) as caught:
        parse_engines(text, 3)
    assert "\n" not in str(caught.value)


def test_a_folder_is_an_engine_only_with_dockerd(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / "cache")
    with pytest.raises(LabError, match="has no executable dockerd"):
        cache.ensure(parse_engines(str(tmp_path), 1)[0])
    sbin = tmp_path / "usr" / "sbin"
    sbin.mkdir(parents=True)
    (sbin / "dockerd").write_text("#!/bin/sh\n")
    (sbin / "dockerd").chmod(0o755)
    engine = cache.ensure(str(tmp_path))
    assert engine.dockerd == str(sbin / "dockerd")
    assert engine.path("/usr/bin").split(":") == [str(sbin), "/usr/bin"]


def test_fetched_engines_live_in_the_cache_and_20_10_is_the_systems(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    assert cache.engine("28.5").folder == tmp_path / "engines" / "28.5"
    assert cache.engine("20.10").folder is None
    assert cache.engine("20.10").path("/usr/bin") == "/usr/bin"


def test_debian_package_versions_match_the_upstream_release() -> None:
    assert _is_version("28.5.2+dfsg4-5", "28.5.2")
    assert _is_version("2.1.9~ds1-5", "2.1.9")
    assert _is_version("1:26.1.5+dfsg1-9", "26.1.5")
    assert not _is_version("28.5.20-1", "28.5.2")
    assert not _is_version("27.5.1+dfsg4-1", "28.5.2")


def test_the_archive_is_read_from_the_machines_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n"
        "URIs: http://mirror.invalid/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main\n"
        "\n"
        "Types: deb\n"
        "URIs: http://mirror.invalid/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/own.gpg\n"
    )
    assert mirror(tmp_path) == ("http://mirror.invalid/debian", "/usr/share/keyrings/own.gpg")


def test_a_one_line_source_list_works_too(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb http://mirror.invalid/debian bookworm main\n"
        "deb http://mirror.invalid/debian-security bookworm-security main\n"
    )
    uri, keyring = mirror(tmp_path)
    assert uri == "http://mirror.invalid/debian"
    assert keyring == "/usr/share/keyrings/debian-archive-keyring.gpg"


def test_no_archive_in_the_sources_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="no Debian archive found"):
        mirror(tmp_path)
