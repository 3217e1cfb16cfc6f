"""Gates are checked when they are passed, before anything reaches the engine."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

import zdd_swarm
from zdd_swarm import CallableGate, ConfigError, Controller, HttpGate, RolloutOptions, ServiceChange
from zdd_swarm.cli import _Obj, cli
from zdd_swarm.gates import GateSample
from zdd_swarm.testing import FakeClock, FakeEngine


def ok() -> bool:
    return True


class CustomGate:
    name = "custom"
    min_success_ratio = 0.5

    def sample(self) -> GateSample:
        return GateSample(True)


@pytest.mark.parametrize(
    "gates, field",
    [
        ([True], "gates[0]"),
        ([42], "gates[0]"),
        ([ok, "http://web.internal/health"], "gates[1]"),
        ([None], "gates[0]"),
        ([HttpGate], "gates[0]"),  # the class, not a gate
        ([lambda url: True], "gates[0]"),  # needs an argument
        (HttpGate("http://web.internal/health"), "gates"),  # not a list
        ("http://web.internal/health", "gates"),
        (42, "gates"),
    ],
)
def test_invalid_gates_raise_config_error_naming_them(gates: Any, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        RolloutOptions(gates=gates)
    assert info.value.field == field
    assert field in str(info.value)


def test_a_gate_object_with_a_bad_ratio_is_refused() -> None:
    bad = CustomGate()
    bad.min_success_ratio = 2  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"gates\[0\]\.min_success_ratio"):
        RolloutOptions(gates=[bad])


def test_callable_gate_checks_its_callable() -> None:
    with pytest.raises(ConfigError, match=r"gate\.check"):
        CallableGate(True)  # type: ignore[arg-type]


def test_valid_gates_are_accepted() -> None:
    custom = CustomGate()
    options = RolloutOptions(gates=(ok, custom, HttpGate("http://web.internal/health"), bool))
    names = [g.name for g in options.gates]
    assert names == ["ok", "custom", "http http://web.internal/health", "bool"]
    assert options.gates[1] is custom


def test_update_with_a_bad_gate_sends_nothing() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock)
    engine.add_service("web", "app:1")
    with pytest.raises(ConfigError):
        Controller(engine, clock=clock).update(
            "web", ServiceChange(image="app:2"), RolloutOptions(gates=[True])
        )
    with pytest.raises(ConfigError):
        zdd_swarm.update("web", image="app:2", gates=[42])  # before any engine is reached
    assert engine.updates == []
    assert engine.inspect_service("web").image == "app:1"


def test_cli_exits_2_for_a_bad_gate() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock)
    engine.add_service("web", "app:1")
    result = CliRunner().invoke(
        cli,
        ["update", "web", "--image", "app:2", "--gate-http", "web.internal/health"],
        obj=_Obj(engine_factory=lambda host: engine, clock=clock),
    )
    assert result.exit_code == 2, result.output
    assert "gate.url" in result.output
    assert engine.updates == []
