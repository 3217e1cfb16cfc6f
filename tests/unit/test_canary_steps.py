"""Canary steps: the model, its three written forms, and the checks of a list."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from zdd_swarm.canary import steps as steps_module
from zdd_swarm.canary.steps import (
    Analysis,
    Pause,
    SetWeight,
    parse_step,
    parse_steps,
    steps_from_data,
    tasks_for_share,
)
from zdd_swarm.errors import ConfigError, InputError, StepError

M = timedelta(minutes=1)


def test_every_name_in_all_exists() -> None:
    for name in steps_module.__all__:
        assert hasattr(steps_module, name), name


@pytest.mark.parametrize(
    ("text", "step"),
    [
        ("10%", SetWeight(percent=10)),
        (" 100 % ", SetWeight(percent=100)),
        ("3", SetWeight(tasks=3)),
        ("set=25%", SetWeight(percent=25)),
        ("pause=2m", Pause(2 * M)),
        ("pause=90", Pause(timedelta(seconds=90))),
        ("pause", Pause()),
        ("analysis=errors", Analysis(("errors",))),
        ("analysis=errors,latency", Analysis(("errors", "latency"))),
    ],
)
def test_cli_forms(text: str, step: Any) -> None:
    assert parse_step(text) == step


def test_pause_without_duration_waits_for_promotion() -> None:
    assert Pause().until_promoted and not Pause(M).until_promoted


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("0%", "set"),
        ("101%", "set"),
        ("0", "set"),
        ("-5%", "step"),
        ("2.5%", "step"),
        ("pause=soon", "pause"),
        ("pause=0s", "pause"),
        ("pause=-1m", "pause"),
        ("analysis=", "analysis"),
        ("analysis=bad name", "analysis"),
        ("wait=2m", "step"),
    ],
)
def test_a_bad_step_names_its_index_and_field(text: str, field: str) -> None:
    with pytest.raises(StepError) as info:
        parse_steps(["10%", text, "100%"])
    assert info.value.index == 1
    assert info.value.field == f"steps[1].{field}"
    assert isinstance(info.value, InputError)


def test_a_list_goes_up_to_100_percent() -> None:
    steps = parse_steps(["10%", "pause=2m", "analysis=errors", "50%", "pause", "100%"])
    assert [str(s) for s in steps] == [
        "10%",
        "pause 120s",
        "analysis errors",
        "50%",
        "pause until promoted",
        "100%",
    ]
    # steps after the last weight run with every task on the new release
    assert parse_steps(["100%", "analysis=errors"])[-1] == Analysis(("errors",))


@pytest.mark.parametrize(
    ("texts", "index", "needle"),
    [
        (["10%", "50%"], 1, "100%"),  # does not end at 100 %
        (["10%", "pause"], 0, "100%"),
        (["50%", "10%", "100%"], 1, "not below step 0's 50%"),
        (["3", "2", "100%"], 1, "not below step 0's 3 tasks"),
        (["10%", "150%"], 1, "1-100"),
    ],
)
def test_a_list_that_does_not_end_at_100_or_goes_down_is_refused(
    texts: list[str], index: int, needle: str
) -> None:
    with pytest.raises(StepError) as info:
        parse_steps(texts)
    assert info.value.index == index and needle in str(info.value)


def test_a_list_without_a_weight_is_refused() -> None:
    with pytest.raises(ConfigError, match="steps"):
        parse_steps(["pause=1m"])
    with pytest.raises(ConfigError, match="steps"):
        parse_steps([])


def test_task_counts_and_shares_are_compared_once_replicas_are_known() -> None:
    # 2 tasks then 25 % of 4 (1 task): going down
    with pytest.raises(StepError) as info:
        parse_steps(["2", "25%", "100%"], replicas=4)
    assert info.value.index == 1
    # more tasks than replicas
    with pytest.raises(StepError, match="at most the service's 4 replicas") as info:
        parse_steps(["5", "100%"], replicas=4)
    assert info.value.index == 0
    # 10 % and 20 % of 4 are both one task: not a decrease
    assert len(parse_steps(["10%", "20%", "1", "100%"], replicas=4)) == 4


def test_analysis_names_must_be_defined() -> None:
    with pytest.raises(StepError, match=r"a defined analysis \(errors, latency\)") as info:
        parse_steps(["10%", "analysis=error", "100%"], analyses={"errors", "latency"})
    assert info.value.field == "steps[1].analysis" and info.value.value == "error"
    assert parse_steps(["10%", "analysis=errors", "100%"], analyses=["errors"])


@pytest.mark.parametrize(
    ("percent", "replicas", "tasks"),
    [
        (1, 10, 1),  # any share > 0 is at least one task
        (5, 4, 1),
        (10, 10, 1),
        (25, 10, 3),  # 2.5 rounds up
        (24, 10, 2),
        (50, 3, 2),  # 1.5 rounds up
        (99, 10, 9),  # and at least one old task below 100 %
        (90, 2, 1),
        (100, 7, 7),
        (50, 1, 1),  # one replica: no canary, its one task
        (0, 5, 0),
        (30, 0, 0),
    ],
)
def test_tasks_for_share(percent: int, replicas: int, tasks: int) -> None:
    assert tasks_for_share(percent, replicas) == tasks


def test_file_forms_including_argos() -> None:
    data = [
        {"set": "10%"},
        {"set": 2},
        {"setWeight": 30},
        {"pause": "2m"},
        {"pause": None},
        {"pause": {}},
        {"pause": {"duration": 60}},
        {"analysis": "errors"},
        {"analysis": {"templates": [{"templateName": "latency"}]}},
        "pause=1m",
        {"set": "100%"},
    ]
    steps = steps_from_data(data)
    assert steps[1] == SetWeight(tasks=2) and steps[2] == SetWeight(percent=30)
    assert steps[3:7] == (Pause(2 * M), Pause(), Pause(), Pause(M))
    assert steps[7:9] == (Analysis(("errors",)), Analysis(("latency",)))
    with pytest.raises(ConfigError, match="a list of steps"):
        steps_from_data("10%")


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"set": "10%", "pause": "1m"}, "step"),
        ({"wait": "1m"}, "wait"),
        ({"pause": {"seconds": 3}}, "pause"),
        ({"analysis": {"templates": "errors"}}, "analysis"),
        ({"setWeight": "ten"}, "setWeight"),
        ({"setWeight": 0}, "setWeight"),
        (7.5, "step"),
    ],
)
def test_bad_file_items_name_index_and_field(item: object, field: str) -> None:
    with pytest.raises(StepError) as info:
        steps_from_data([{"set": "10%"}, item, {"set": "100%"}])
    assert info.value.field == f"steps[1].{field}"


def test_the_package_exports_what_it_lists() -> None:
    import zdd_swarm.canary as canary

    for name in canary.__all__:
        assert hasattr(canary, name), name
