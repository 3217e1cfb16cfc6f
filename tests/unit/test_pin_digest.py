"""``pin_digest`` pins the registry's digest and sets ``Placement.Platforms``
from the image's manifest list, as ``docker service update --image`` does."""

from __future__ import annotations

from typing import Any

import pytest

from zdd_swarm import Controller, Outcome, ServiceChange
from zdd_swarm.model import Platform, ResolvedImage
from zdd_swarm.testing import FakeClock, FakeEngine

DIGEST = "sha256:" + "0123456789abcdef" * 4

#: ``GET /distribution/{name}/json`` for a multi-platform image with build
#: attestations, as engine 20.10 answers it
MANIFEST_LIST: dict[str, Any] = {
    "Descriptor": {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": DIGEST,
        "size": 1609,
    },
    "Platforms": [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm", "os": "linux", "variant": "v6"},
        {"architecture": "arm", "os": "linux", "variant": "v7"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
        {"architecture": "amd64", "os": "linux", "variant": "v3"},
        {"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.2227"},
        {"architecture": "unknown", "os": "unknown"},
    ],
}


def test_platforms_follow_the_docker_clients_rule() -> None:
    # attestations ("unknown") skipped, arm without an architecture
    # (moby/swarmkit#2294), only OS and architecture, duplicates dropped
    resolved = ResolvedImage.from_api(MANIFEST_LIST)
    assert resolved.digest == DIGEST
    assert resolved.platforms == (
        Platform(os="linux", architecture="amd64"),
        Platform(os="linux"),
        Platform(os="linux", architecture="arm64"),
        Platform(os="windows", architecture="amd64"),
    )
    assert [p.to_api() for p in resolved.platforms] == [
        {"Architecture": "amd64", "OS": "linux"},
        {"OS": "linux"},
        {"Architecture": "arm64", "OS": "linux"},
        {"Architecture": "amd64", "OS": "windows"},
    ]


def test_a_single_manifest_has_its_one_platform_and_none_is_none() -> None:
    single = {
        "Descriptor": {"digest": DIGEST},
        "Platforms": [{"architecture": "amd64", "os": "linux"}],
    }
    assert ResolvedImage.from_api(single).platforms == (Platform("linux", "amd64"),)
    assert ResolvedImage.from_api({"Descriptor": {"digest": DIGEST}}).platforms == ()


@pytest.mark.parametrize(
    "image, pinned",
    [
        ("app:2", f"app:2@{DIGEST}"),
        (
            "registry.example.com:5000/team/app",
            f"registry.example.com:5000/team/app:latest@{DIGEST}",
        ),
        (f"app:2@{'sha256:' + 'f' * 64}", f"app:2@{'sha256:' + 'f' * 64}"),
    ],
)
def test_the_pinned_reference_is_the_docker_clients(image: str, pinned: str) -> None:
    assert ResolvedImage(DIGEST).pin(image) == pinned


def test_the_platforms_replace_the_specs_and_the_rest_of_placement_stays() -> None:
    spec = {
        "TaskTemplate": {
            "ContainerSpec": {"Image": "app:1"},
            "Placement": {"Constraints": ["node.role==worker"], "Platforms": [{"OS": "linux"}]},
        }
    }
    resolved = ResolvedImage(DIGEST, (Platform("linux", "amd64"), Platform("linux", "arm64")))
    new = ServiceChange(image="app:2", pin_digest=True).apply(spec, resolved=resolved)
    assert new["TaskTemplate"]["ContainerSpec"]["Image"] == f"app:2@{DIGEST}"
    assert new["TaskTemplate"]["Placement"] == {
        "Constraints": ["node.role==worker"],
        "Platforms": [
            {"Architecture": "amd64", "OS": "linux"},
            {"Architecture": "arm64", "OS": "linux"},
        ],
    }
    # no platforms from the registry: the spec's are kept (len(imgPlatforms) > 0)
    kept = ServiceChange(image="app:2", pin_digest=True).apply(spec, resolved=ResolvedImage(DIGEST))
    assert kept["TaskTemplate"]["Placement"] == spec["TaskTemplate"]["Placement"]


def test_an_update_with_pin_digest_sends_the_digest_and_the_platforms() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock)
    engine.add_service("web", "app:1", replicas=2)
    asked: list[str] = []

    def resolve_image(image: str) -> ResolvedImage:
        asked.append(image)
        return ResolvedImage.from_api(MANIFEST_LIST)

    engine.resolve_image = resolve_image  # type: ignore[method-assign]
    controller = Controller(engine, clock=clock)
    plan = controller.plan("web", ServiceChange(image="app:2", pin_digest=True))
    assert plan.image_after == f"app:2@{DIGEST}"
    result = controller.update("web", ServiceChange(image="app:2", pin_digest=True))
    assert result.outcome is Outcome.COMPLETED
    template = engine.inspect_service("web").spec["TaskTemplate"]
    assert template["ContainerSpec"]["Image"] == f"app:2@{DIGEST}"
    assert template["Placement"]["Platforms"][0] == {"Architecture": "amd64", "OS": "linux"}
    assert len(template["Placement"]["Platforms"]) == 4
    assert asked == ["app:2", "app:2"]


def test_without_pin_digest_the_registry_is_not_asked() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock)
    engine.add_service("web", "app:1", replicas=2)
    engine.resolve_image = lambda image: pytest.fail("asked the registry")  # type: ignore[method-assign]
    Controller(engine, clock=clock).update("web", ServiceChange(image="app:2"))
    template = engine.inspect_service("web").spec["TaskTemplate"]
    assert template["ContainerSpec"]["Image"] == "app:2" and "Placement" not in template
