"""Conditions of a metric: parsed once, evaluated without eval."""

from __future__ import annotations

import math
from typing import Any

import pytest

from zdd_swarm.canary.conditions import Condition, EvaluationError
from zdd_swarm.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "result", "expected"),
    [
        ("result < 0.05", 0.01, True),
        ("result < 0.05", 0.05, False),
        ("result[0] >= 0.95", [0.96], True),
        ("result[0] >= 0.95", ["0.9"], False),  # numeric strings compare as numbers
        ("result[1] == 2 and result[0] < 1", [0.5, 2.0], True),
        ("result[0] > 1 or result[1] > 1", [0.5, 2.0], True),
        ("result[0] > 1 || result[1] > 1", [0.5, 0.5], False),
        ("result[0] < 1 && !(result[1] < 1)", [0.5, 2.0], True),
        ("not result.ok", {"ok": False}, True),
        ("result.data.errors == 0", {"data": {"errors": 0}}, True),
        ("result['error-rate'] <= 0.1", {"error-rate": 0.1}, True),
        ('result.status == "ok"', {"status": "ok"}, True),
        ("result == true", True, True),
        ("len(result) == 0", [], True),
        ("isNaN(result[0]) or result[0] < 5", [math.nan], True),
        ("result[0] < 5", [math.nan], False),  # NaN compares false, as in Go
        ("isInf(result)", math.inf, True),
        ("abs(result) < 1", -0.5, True),
        ("result > -1.5e-3", 0, True),
        ("(result > 1) == false", 0, True),
    ],
)
def test_conditions_evaluate(text: str, result: Any, expected: bool) -> None:
    assert Condition(text).evaluate(result) is expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "result <",
        "result < 0.05 extra",
        "result < 1 < 2",
        "import os",
        "__import__('os').system('true')",
        "open('x')",
        "result[0.5] > 1",
        "result[-1] > 1",
        "result @ 2",
        "(result > 1",
        "result > 'unterminated",
    ],
)
def test_a_condition_that_does_not_parse_is_bad_input(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        Condition(text, "metrics.errors.success_condition")
    assert info.value.field == "metrics.errors.success_condition"


@pytest.mark.parametrize(
    ("text", "result"),
    [
        ("result[0] < 1", []),  # an empty Prometheus vector
        ("result.errors < 1", {}),
        ("result < 1", "abc"),
        ("result[0] < 1", 0.5),
        ("len(result) > 0", 3.0),
    ],
)
def test_a_condition_that_cannot_be_evaluated_raises(text: str, result: Any) -> None:
    with pytest.raises(EvaluationError):
        Condition(text).evaluate(result)


def test_a_dunder_field_is_only_a_key() -> None:
    # names after a dot are mapping keys, never attributes
    with pytest.raises(EvaluationError):
        Condition("result.__class__ == 1").evaluate(1.0)
