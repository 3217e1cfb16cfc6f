"""Applying a change to a spec keeps everything else exactly."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from zdd_swarm import ConfigError, InvalidImageReference, ServiceChange, UpdateConfig
from zdd_swarm.spec import diff_specs, validate_image_reference

SPEC: dict[str, Any] = {
    "Name": "web",
    "Labels": {"team": "a", "tier": "front"},
    "TaskTemplate": {
        "ContainerSpec": {
            "Image": "reg:5000/app:1",
            "Env": ["A=1", "SECRET=s3cr3t", "B=2"],
            "Labels": {"c": "1"},
            "Mounts": [{"Type": "volume", "Source": "data", "Target": "/data"}],
            "Secrets": [{"SecretName": "db", "SecretID": "x", "File": {"Name": "db"}}],
            "Configs": [{"ConfigName": "cfg", "ConfigID": "y", "File": {"Name": "/cfg"}}],
        },
        "Resources": {"Limits": {"NanoCPUs": 500_000_000}},
        "Placement": {"Constraints": ["node.role==worker"]},
        "Networks": [{"Target": "net1"}],
        "ForceUpdate": 2,
    },
    "Mode": {"Replicated": {"Replicas": 6}},
    "EndpointSpec": {"Mode": "dnsrr"},
}


def test_image_change_touches_only_the_image() -> None:
    new = ServiceChange(image="reg:5000/app:2").apply(SPEC)
    assert diff_specs(SPEC, new) == ["TaskTemplate.ContainerSpec.Image"]
    assert SPEC["TaskTemplate"]["ContainerSpec"]["Image"] == "reg:5000/app:1"  # not mutated


def test_env_add_and_rm_keep_order_and_other_vars() -> None:
    new = ServiceChange(env_add=["B=3", "C=4"], env_rm=["A"]).apply(SPEC)
    assert new["TaskTemplate"]["ContainerSpec"]["Env"] == ["SECRET=s3cr3t", "B=3", "C=4"]


def test_labels_and_container_labels() -> None:
    new = ServiceChange(
        labels_add={"x": "1"}, labels_rm=["tier"], container_labels_add=["d=2"]
    ).apply(SPEC)
    assert new["Labels"] == {"team": "a", "x": "1"}
    assert new["TaskTemplate"]["ContainerSpec"]["Labels"] == {"c": "1", "d": "2"}


def test_force_bumps_force_update() -> None:
    new = ServiceChange(force=True).apply(SPEC)
    assert diff_specs(SPEC, new) == ["TaskTemplate.ForceUpdate"]
    assert new["TaskTemplate"]["ForceUpdate"] == 3


def test_command_args_and_configs() -> None:
    new = ServiceChange(
        command=["/app"], args=["--x"], update_config=UpdateConfig(parallelism=2)
    ).apply(SPEC)
    assert new["TaskTemplate"]["ContainerSpec"]["Command"] == ["/app"]
    assert new["TaskTemplate"]["ContainerSpec"]["Args"] == ["--x"]
    assert new["UpdateConfig"]["Parallelism"] == 2


def test_patch_hook_may_mutate_or_return() -> None:
    def mutate(spec: dict[str, Any]) -> None:
        spec["Mode"]["Replicated"]["Replicas"] = 3

    def replace(spec: dict[str, Any]) -> dict[str, Any]:
        spec = copy.deepcopy(spec)
        spec["Labels"] = {}
        return spec

    assert ServiceChange(patch=mutate).apply(SPEC)["Mode"]["Replicated"]["Replicas"] == 3
    assert ServiceChange(patch=replace).apply(SPEC)["Labels"] == {}
    assert SPEC["Mode"]["Replicated"]["Replicas"] == 6


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"env_add": ["NOEQUALS"]}, "env_add"),
        ({"env_add": ["=v"]}, "env_add"),
        ({"env_rm": ["A=1"]}, "env_rm"),
        ({"labels_add": ["x"]}, "labels_add"),
        ({"env_add": ["A=1"], "env_rm": ["A"]}, "env_rm"),
        ({"pin_digest": True}, "pin_digest"),
    ],
)
def test_bad_change_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ServiceChange(**kwargs)
    assert info.value.field == field
    assert field in str(info.value)


@pytest.mark.parametrize(
    "ref",
    [
        "nginx",
        "nginx:1.25",
        "reg:5000/team/app:v2",
        "localhost/app",
        "app@sha256:" + "a" * 64,
        "reg.example.com/a/b:tag@sha256:" + "0" * 64,
    ],
)
def test_valid_image_references(ref: str) -> None:
    assert validate_image_reference(ref) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "",
        " nginx",
        "Nginx",
        "app:",
        "app:bad tag",
        "app::1",
        "app@sha256:short",
        "-app",
        "app:" + "x" * 129,
    ],
)
def test_invalid_image_references(ref: str) -> None:
    with pytest.raises(InvalidImageReference):
        validate_image_reference(ref)


def test_diff_specs_gives_paths_never_values() -> None:
    new = ServiceChange(env_add={"SECRET": "other"}).apply(SPEC)
    paths = diff_specs(SPEC, new)
    assert paths == ["TaskTemplate.ContainerSpec.Env"]
    assert "s3cr3t" not in repr(paths) and "other" not in repr(paths)
