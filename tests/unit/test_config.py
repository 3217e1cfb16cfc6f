"""The update/rollback config model: Swarm's defaults, durations, wire forms, lint."""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta
from typing import Any

import pytest

from zdd_swarm import config as config_module
from zdd_swarm.config import (
    FailureAction,
    LintWarning,
    Order,
    RollbackConfig,
    UpdateConfig,
    configs_from_compose,
    format_duration,
    from_nanoseconds,
    lint,
    parse_duration,
    to_nanoseconds,
)
from zdd_swarm.errors import ConfigError, InputError

S = timedelta(seconds=1)
MS = timedelta(milliseconds=1)
US = timedelta(microseconds=1)

#: swarmkit api/defaults/service.go, in Engine API form.
SWARM_DEFAULTS_API = {
    "Parallelism": 1,
    "Delay": 0,
    "FailureAction": "pause",
    "Monitor": 5_000_000_000,
    "MaxFailureRatio": 0.0,
    "Order": "stop-first",
}

CONFIG_CLASSES = [UpdateConfig, RollbackConfig]


# -- defaults -------------------------------------------------------------------


@pytest.mark.parametrize("cls", CONFIG_CLASSES)
def test_defaults_equal_swarms_own(cls: type[UpdateConfig]) -> None:
    cfg = cls()
    assert cfg.parallelism == 1
    assert cfg.delay == timedelta(0)
    assert cfg.failure_action is FailureAction.PAUSE
    assert cfg.monitor == 5 * S
    assert cfg.max_failure_ratio == 0.0
    assert cfg.order is Order.STOP_FIRST
    assert cfg.to_api() == SWARM_DEFAULTS_API


def test_enums_are_strings_with_the_engine_values() -> None:
    assert Order("start-first") is Order.START_FIRST
    assert str(Order.STOP_FIRST) == "stop-first"
    assert [o.value for o in Order] == ["start-first", "stop-first"]
    assert [a.value for a in FailureAction] == ["continue", "pause", "rollback"]
    assert isinstance(FailureAction.PAUSE, str)


def test_every_name_in_all_exists() -> None:
    for name in config_module.__all__:
        assert hasattr(config_module, name), name


# -- durations ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("500ms", 500 * MS),
        ("10s", 10 * S),
        ("1m30s", 90 * S),
        ("1h", 3600 * S),
        ("1.5s", 1500 * MS),
        ("250us", 250 * US),
        ("250µs", 250 * US),  # micro sign, as Go prints it
        ("250μs", 250 * US),  # Greek mu, also accepted by Go
        ("100ns", timedelta(0)),  # below timedelta's precision: rounded down
        ("1500ns", 1 * US),
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
        ("10", 10 * S),  # bare number: seconds
        ("2.5", 2500 * MS),
        ("1.5h", 90 * 60 * S),
        ("1h0m5s", 3605 * S),
        ("2h45m", (2 * 60 + 45) * 60 * S),
        (".5s", 500 * MS),
        ("1.s", 1 * S),
        ("+3s", 3 * S),
        ("-0s", timedelta(0)),
        (" 10s ", 10 * S),
        ("1.0000009s", S + 0 * US),  # the sub-microsecond fraction is dropped
        ("1.000001s", S + US),
        (0, timedelta(0)),
        (10, 10 * S),
        (1.5, 1500 * MS),
        (0.25, 250 * MS),
        (timedelta(minutes=2), 2 * 60 * S),
        (timedelta(0), timedelta(0)),
    ],
)
def test_parse_duration_accepts(value: Any, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "10 parsecs",
        "-1s",
        "-1",
        "",
        "   ",
        True,
        False,
        float("nan"),
        float("inf"),
        float("-inf"),
        -1,
        -0.5,
        timedelta(seconds=-1),
        "s",
        "ms",
        ".s",
        "1.2.3s",
        "10S",  # units are case-sensitive in Go
        "10sec",
        "1d",
        "1e3s",
        "nan",
        "inf",
        "1h 30m",
        "3000000h",  # beyond Go's int64 nanoseconds (about 292 years)
        timedelta(days=200_000),
        10**20,
        None,
        [10],
        b"10s",
    ],
)
def test_parse_duration_rejects(value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(value, "delay")
    err = info.value
    assert err.field == "delay"
    assert err.value is value or (isinstance(value, float) and math.isnan(value))
    assert "delay" in str(err)
    assert repr(value) in str(err)
    assert "a duration such as" in err.allowed


def test_config_error_is_an_input_error_and_a_value_error() -> None:
    with pytest.raises(InputError):
        parse_duration("nope")
    with pytest.raises(ValueError):
        parse_duration("nope")


def test_parse_duration_names_the_default_field() -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration("nope")
    assert info.value.field == "duration"


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(0), "0s"),
        (US, "1µs"),
        (250 * US, "250µs"),
        (1500 * US, "1.5ms"),
        (999_999 * US, "999.999ms"),
        (500 * MS, "500ms"),
        (S, "1s"),
        (1500 * MS, "1.5s"),
        (10 * S, "10s"),
        (60 * S, "1m0s"),
        (90 * S, "1m30s"),
        (90 * S + US, "1m30.000001s"),
        (3600 * S, "1h0m0s"),
        (3605 * S, "1h0m5s"),
        (timedelta(days=2), "48h0m0s"),
        (timedelta(hours=100, minutes=1, seconds=1), "100h1m1s"),
        (-1500 * MS, "-1.5s"),
        (-250 * US, "-250µs"),
    ],
)
def test_format_duration_prints_like_go(td: timedelta, text: str) -> None:
    assert format_duration(td) == text


@pytest.mark.parametrize(
    "td",
    [
        timedelta(0),
        US,
        999 * US,
        MS,
        123_456 * US,
        S - US,
        S,
        59 * S + 999_999 * US,
        61 * S,
        3599 * S,
        3600 * S + US,
        timedelta(days=3, hours=4, minutes=5, seconds=6, microseconds=7),
        timedelta(days=106_751),  # close to Go's maximum duration
    ],
)
def test_format_then_parse_gives_the_same_duration(td: timedelta) -> None:
    assert parse_duration(format_duration(td)) == td


@pytest.mark.parametrize(
    "text", ["0s", "250µs", "1.5ms", "500ms", "10s", "1m30s", "1h0m5s", "48h0m0s", "1.000001s"]
)
def test_canonical_strings_survive_parse_then_format(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize(
    ("td", "ns"),
    [
        (timedelta(0), 0),
        (US, 1_000),
        (5 * S, 5_000_000_000),
        (timedelta(days=10_000, microseconds=1), 10_000 * 86_400 * 10**9 + 1_000),
        (-US, -1_000),
    ],
)
def test_nanoseconds_convert_exactly_both_ways(td: timedelta, ns: int) -> None:
    assert to_nanoseconds(td) == ns
    assert from_nanoseconds(ns) == td


@pytest.mark.parametrize(("ns", "td"), [(999, timedelta(0)), (1_999, US), (5_000_000_999, 5 * S)])
def test_from_nanoseconds_rounds_sub_microseconds_down(ns: int, td: timedelta) -> None:
    assert from_nanoseconds(ns) == td


@pytest.mark.parametrize("ns", [True, 1.5, "10", None])
def test_from_nanoseconds_rejects_non_integers(ns: Any) -> None:
    with pytest.raises(ConfigError):
        from_nanoseconds(ns)


# -- construction: coercion and validation --------------------------------------


def test_fields_are_coerced_from_strings_and_numbers() -> None:
    cfg = UpdateConfig(
        parallelism="3",
        delay="1m30s",
        failure_action="ROLLBACK",
        monitor=30,
        max_failure_ratio="0.25",
        order="start_first",
    )
    assert cfg == UpdateConfig(
        parallelism=3,
        delay=90 * S,
        failure_action=FailureAction.ROLLBACK,
        monitor=30 * S,
        max_failure_ratio=0.25,
        order=Order.START_FIRST,
    )
    assert isinstance(cfg.failure_action, FailureAction)
    assert isinstance(cfg.order, Order)
    assert isinstance(cfg.max_failure_ratio, float)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("start-first", Order.START_FIRST),
        ("Start-First", Order.START_FIRST),
        ("START_FIRST", Order.START_FIRST),
        ("stop_first", Order.STOP_FIRST),
        (Order.STOP_FIRST, Order.STOP_FIRST),
    ],
)
def test_order_accepts_any_case_and_underscores(given: Any, expected: Order) -> None:
    assert UpdateConfig(order=given).order is expected


@pytest.mark.parametrize(("ratio", "expected"), [(0, 0.0), (1, 1.0), (0.5, 0.5), ("1", 1.0)])
def test_max_failure_ratio_accepts_the_closed_interval(ratio: Any, expected: float) -> None:
    assert UpdateConfig(max_failure_ratio=ratio).max_failure_ratio == expected


def test_monitor_zero_means_swarms_default_like_the_engine() -> None:
    assert UpdateConfig(monitor=0).monitor == 5 * S
    assert RollbackConfig(monitor="0s").monitor == 5 * S


def test_parallelism_zero_is_allowed_and_means_all_at_once() -> None:
    cfg = UpdateConfig(parallelism=0)
    assert cfg.parallelism == 0
    assert cfg.effective_parallelism(7) == 7


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("parallelism", -1, "an integer >= 0 (0 = all tasks at once)"),
        ("parallelism", True, "an integer >= 0"),
        ("parallelism", 1.5, "an integer >= 0"),
        ("parallelism", 2.0, "an integer >= 0"),
        ("parallelism", "two", "an integer >= 0"),
        ("parallelism", "-1", "an integer >= 0"),
        ("parallelism", None, "an integer >= 0"),
        ("delay", "10 parsecs", "a duration such as"),
        ("delay", "-1s", "a duration such as"),
        ("delay", -5, "a duration such as"),
        ("delay", True, "a duration such as"),
        ("monitor", "", "a duration such as"),
        ("monitor", float("inf"), "a duration such as"),
        ("failure_action", "explode", "one of: continue, pause"),
        ("failure_action", 1, "one of: continue, pause"),
        ("failure_action", None, "one of: continue, pause"),
        ("max_failure_ratio", 1.5, "a number between 0 and 1"),
        ("max_failure_ratio", -0.1, "a number between 0 and 1"),
        ("max_failure_ratio", "half", "a number between 0 and 1"),
        ("max_failure_ratio", "nan", "a number between 0 and 1"),
        ("max_failure_ratio", True, "a number between 0 and 1"),
        ("order", "random", "one of: start-first, stop-first"),
        ("order", "", "one of: start-first, stop-first"),
        ("order", 0, "one of: start-first, stop-first"),
    ],
)
@pytest.mark.parametrize("cls", CONFIG_CLASSES)
def test_every_invalid_field_raises_config_error_naming_field_and_value(
    cls: type[UpdateConfig], field: str, value: Any, allowed: str
) -> None:
    with pytest.raises(ConfigError) as info:
        cls(**{field: value})
    err = info.value
    assert err.field == field
    assert err.value is value
    assert allowed in err.allowed
    assert str(err).startswith(f"{field}: ")
    assert repr(value) in str(err)


@pytest.mark.parametrize("value", ["rollback", "ROLLBACK", FailureAction.ROLLBACK])
def test_rollback_config_rejects_rollback_as_failure_action(value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        RollbackConfig(failure_action=value)
    assert info.value.field == "failure_action"
    assert info.value.allowed == "one of: continue, pause"
    with pytest.raises(ConfigError):
        RollbackConfig().replace(failure_action=value)


@pytest.mark.parametrize("value", ["continue", "pause"])
def test_rollback_config_accepts_continue_and_pause(value: str) -> None:
    assert RollbackConfig(failure_action=value).failure_action == value


def test_configs_are_frozen_and_hashable() -> None:
    cfg = UpdateConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.parallelism = 2  # type: ignore[misc]
    assert hash(cfg) == hash(UpdateConfig())
    assert dataclasses.is_dataclass(RollbackConfig)


def test_update_and_rollback_configs_with_equal_fields_are_not_equal() -> None:
    update: object = UpdateConfig()
    assert update != RollbackConfig()
    assert repr(RollbackConfig()).startswith("RollbackConfig(")


# -- replace / effective_parallelism --------------------------------------------


def test_replace_returns_a_revalidated_copy() -> None:
    cfg = UpdateConfig()
    new = cfg.replace(parallelism="2", delay="10s", order="start-first")
    assert new == UpdateConfig(parallelism=2, delay=10 * S, order=Order.START_FIRST)
    assert cfg == UpdateConfig()
    assert type(RollbackConfig().replace(parallelism=3)) is RollbackConfig
    with pytest.raises(ConfigError) as info:
        cfg.replace(delay="soon")
    assert info.value.field == "delay"


def test_replace_rejects_unknown_fields() -> None:
    with pytest.raises(ConfigError) as info:
        UpdateConfig().replace(paralelism=2)
    assert info.value.field == "paralelism"
    assert "parallelism" in info.value.allowed


@pytest.mark.parametrize(
    ("parallelism", "replicas", "expected"),
    [(0, 5, 5), (0, 0, 0), (1, 5, 1), (2, 5, 2), (10, 3, 3), (3, 0, 0)],
)
def test_effective_parallelism(parallelism: int, replicas: int, expected: int) -> None:
    assert UpdateConfig(parallelism=parallelism).effective_parallelism(replicas) == expected


@pytest.mark.parametrize("replicas", [-1, True, 1.5])
def test_effective_parallelism_rejects_bad_replica_counts(replicas: Any) -> None:
    with pytest.raises(ConfigError) as info:
        UpdateConfig().effective_parallelism(replicas)
    assert info.value.field == "replicas"


# -- Engine API form --------------------------------------------------------------

SAMPLE_CONFIGS = [
    UpdateConfig(),
    UpdateConfig(parallelism=0, failure_action="continue"),
    UpdateConfig(
        parallelism=4,
        delay="1m30.5s",
        failure_action="rollback",
        monitor="2m",
        max_failure_ratio=0.3,
        order="start-first",
    ),
    UpdateConfig(delay=US, monitor=timedelta(days=1, microseconds=7)),
    RollbackConfig(),
    RollbackConfig(parallelism=0, failure_action="continue", max_failure_ratio=1),
]


@pytest.mark.parametrize("cfg", SAMPLE_CONFIGS, ids=repr)
def test_api_round_trip(cfg: UpdateConfig) -> None:
    assert type(cfg).from_api(cfg.to_api()) == cfg


def test_to_api_uses_engine_names_nanoseconds_and_plain_strings() -> None:
    api = UpdateConfig(
        parallelism=2, delay="10s", failure_action="rollback", monitor="1m", order="start-first"
    ).to_api()
    assert api == {
        "Parallelism": 2,
        "Delay": 10_000_000_000,
        "FailureAction": "rollback",
        "Monitor": 60_000_000_000,
        "MaxFailureRatio": 0.0,
        "Order": "start-first",
    }
    assert type(api["FailureAction"]) is str
    assert type(api["Order"]) is str


@pytest.mark.parametrize("cls", CONFIG_CLASSES)
def test_from_api_none_means_swarm_defaults(cls: type[UpdateConfig]) -> None:
    assert cls.from_api(None) == cls()


@pytest.mark.parametrize("cls", CONFIG_CLASSES)
def test_from_api_reads_omitted_keys_as_the_zeros_the_engine_left_out(
    cls: type[UpdateConfig],
) -> None:
    cfg = cls.from_api({})
    assert cfg.parallelism == 0  # the engine omits Parallelism when it is 0
    assert cfg.delay == timedelta(0)
    assert cfg.failure_action is FailureAction.PAUSE
    assert cfg.monitor == 5 * S
    assert cfg.max_failure_ratio == 0.0
    assert cfg.order is Order.STOP_FIRST


def test_from_api_monitor_zero_means_the_default_monitor() -> None:
    assert UpdateConfig.from_api({"Parallelism": 1, "Monitor": 0}).monitor == 5 * S


def test_from_api_reads_a_typical_inspect_output_and_ignores_unknown_keys() -> None:
    cfg = UpdateConfig.from_api(
        {
            "Parallelism": 2,
            "Delay": 10_000_000_000,
            "FailureAction": "rollback",
            "Monitor": 15_000_000_000,
            "MaxFailureRatio": 0.2,
            "Order": "start-first",
            "SomethingNew": True,
        }
    )
    assert cfg == UpdateConfig(
        parallelism=2,
        delay="10s",
        failure_action="rollback",
        monitor="15s",
        max_failure_ratio=0.2,
        order="start-first",
    )


def test_from_api_reads_a_stored_rollback_action_in_rollback_config_as_pause() -> None:
    # swarmkit never rolls back a rollback: it pauses instead.
    cfg = RollbackConfig.from_api({"Parallelism": 1, "FailureAction": "rollback"})
    assert cfg.failure_action is FailureAction.PAUSE


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"Delay": "10s"}, "delay"),
        ({"Monitor": True}, "monitor"),
        ({"Delay": -1_000}, "delay"),
        ({"Parallelism": -1}, "parallelism"),
        ({"FailureAction": "explode"}, "failure_action"),
        ({"MaxFailureRatio": 2}, "max_failure_ratio"),
        ({"Order": "sideways"}, "order"),
    ],
)
def test_from_api_rejects_invalid_values(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        UpdateConfig.from_api(data)
    assert info.value.field == field


def test_from_api_rejects_a_non_mapping() -> None:
    with pytest.raises(ConfigError):
        UpdateConfig.from_api([1, 2])  # type: ignore[arg-type]


# -- compose form -----------------------------------------------------------------


@pytest.mark.parametrize("cfg", SAMPLE_CONFIGS, ids=repr)
def test_compose_round_trip(cfg: UpdateConfig) -> None:
    assert type(cfg).from_compose(cfg.to_compose()) == cfg


def test_to_compose_writes_go_durations_and_enum_strings() -> None:
    cfg = UpdateConfig(parallelism=2, delay=90, order="start-first", max_failure_ratio=0.1)
    assert cfg.to_compose() == {
        "parallelism": 2,
        "delay": "1m30s",
        "failure_action": "pause",
        "monitor": "5s",
        "max_failure_ratio": 0.1,
        "order": "start-first",
    }
    assert type(cfg.to_compose()["order"]) is str


@pytest.mark.parametrize("cls", CONFIG_CLASSES)
@pytest.mark.parametrize("data", [None, {}])
def test_from_compose_missing_means_swarm_defaults(
    cls: type[UpdateConfig], data: dict[str, Any] | None
) -> None:
    assert cls.from_compose(data) == cls()


def test_from_compose_fills_missing_keys_with_swarm_defaults() -> None:
    cfg = UpdateConfig.from_compose({"delay": "10s", "order": "start-first", "monitor": None})
    assert cfg == UpdateConfig(delay=10 * S, order=Order.START_FIRST)
    assert cfg.parallelism == 1


def test_from_compose_accepts_yaml_numbers() -> None:
    cfg = UpdateConfig.from_compose({"parallelism": 2, "delay": 5, "max_failure_ratio": 0})
    assert cfg == UpdateConfig(parallelism=2, delay=5 * S)


@pytest.mark.parametrize(
    ("cls", "data", "field", "value"),
    [
        (UpdateConfig, {"delay": "10 parsecs"}, "update_config.delay", "10 parsecs"),
        (UpdateConfig, {"parallelism": -1}, "update_config.parallelism", -1),
        (UpdateConfig, {"order": "sideways"}, "update_config.order", "sideways"),
        (
            RollbackConfig,
            {"failure_action": "rollback"},
            "rollback_config.failure_action",
            "rollback",
        ),
        (RollbackConfig, {"max_failure_ratio": 3}, "rollback_config.max_failure_ratio", 3),
    ],
)
def test_from_compose_errors_name_the_section_and_field(
    cls: type[UpdateConfig], data: dict[str, Any], field: str, value: Any
) -> None:
    with pytest.raises(ConfigError) as info:
        cls.from_compose(data)
    assert info.value.field == field
    assert info.value.value == value
    assert field in str(info.value)
    assert repr(value) in str(info.value)


def test_from_compose_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError) as info:
        UpdateConfig.from_compose({"paralelism": 2})
    assert info.value.field == "update_config.paralelism"
    assert info.value.value == 2
    assert info.value.allowed == (
        "one of: parallelism, delay, failure_action, monitor, max_failure_ratio, order"
    )


def test_from_compose_uses_the_section_given() -> None:
    with pytest.raises(ConfigError) as info:
        UpdateConfig.from_compose({"delay": "x"}, section="deploy.update_config")
    assert info.value.field == "deploy.update_config.delay"


def test_from_compose_rejects_a_non_mapping() -> None:
    with pytest.raises(ConfigError) as info:
        UpdateConfig.from_compose("fast")  # type: ignore[arg-type]
    assert info.value.field == "update_config"


def test_configs_from_compose_reads_both_sections() -> None:
    service = {
        "image": "web:2",
        "deploy": {
            "replicas": 4,
            "update_config": {"parallelism": 2, "delay": "10s", "failure_action": "rollback"},
            "rollback_config": {"parallelism": 0, "order": "start-first"},
        },
    }
    update, rollback = configs_from_compose(service)
    assert update == UpdateConfig(parallelism=2, delay=10 * S, failure_action="rollback")
    assert rollback == RollbackConfig(parallelism=0, order="start-first")


@pytest.mark.parametrize(
    "service", [{}, {"image": "web:1"}, {"deploy": None}, {"deploy": {"replicas": 2}}]
)
def test_configs_from_compose_defaults_what_is_missing(service: dict[str, Any]) -> None:
    assert configs_from_compose(service) == (UpdateConfig(), RollbackConfig())


def test_configs_from_compose_rejects_a_deploy_that_is_not_a_mapping() -> None:
    with pytest.raises(ConfigError) as info:
        configs_from_compose({"deploy": ["update_config"]})
    assert info.value.field == "deploy"


def test_configs_from_compose_rejects_a_service_that_is_not_a_mapping() -> None:
    with pytest.raises(ConfigError):
        configs_from_compose("web")  # type: ignore[arg-type]


# -- lint ---------------------------------------------------------------------------

HEALTHY: dict[str, Any] = {
    "has_healthcheck": True,
    "healthcheck_interval": 2 * S,
    "healthcheck_retries": 2,
    "healthcheck_start_period": timedelta(0),
}


def codes(warnings: list[LintWarning]) -> list[str]:
    return [w.code for w in warnings]


def test_lint_clean_config_gives_no_warnings() -> None:
    assert lint(UpdateConfig(), **HEALTHY) == []
    assert lint(UpdateConfig()) == []  # nothing known about the healthcheck: nothing to say


def test_lint_warns_when_delay_is_not_shorter_than_monitor() -> None:
    warnings = lint(UpdateConfig(delay="10s", monitor="5s"), **HEALTHY)
    assert codes(warnings) == ["delay-ge-monitor"]
    assert "10s" in warnings[0].message and "5s" in warnings[0].message
    assert codes(lint(UpdateConfig(delay="5s", monitor="5s"), **HEALTHY)) == ["delay-ge-monitor"]
    assert lint(UpdateConfig(delay="4s", monitor="5s"), **HEALTHY) == []


def test_lint_warns_on_start_first_with_host_mode_ports() -> None:
    cfg = UpdateConfig(order="start-first")
    assert codes(lint(cfg, host_mode_ports=True, **HEALTHY)) == ["start-first-host-ports"]
    assert lint(cfg, host_mode_ports=False, **HEALTHY) == []
    assert lint(UpdateConfig(), host_mode_ports=True, **HEALTHY) == []


def test_lint_warns_when_there_is_no_healthcheck() -> None:
    assert codes(lint(UpdateConfig(), has_healthcheck=False)) == ["no-healthcheck"]
    assert lint(UpdateConfig(), has_healthcheck=None) == []


def test_lint_warns_when_monitor_ends_before_the_healthcheck_can_fail() -> None:
    warnings = lint(
        UpdateConfig(monitor="5s"),
        has_healthcheck=True,
        healthcheck_interval=30 * S,
        healthcheck_retries=3,
        healthcheck_start_period=10 * S,
    )
    assert codes(warnings) == ["monitor-shorter-than-healthcheck"]
    assert "1m40s" in warnings[0].message  # 10s + 30s * 3
    exactly_enough = lint(
        UpdateConfig(monitor="1m40s"),
        has_healthcheck=True,
        healthcheck_interval=30 * S,
        healthcheck_retries=3,
        healthcheck_start_period=10 * S,
    )
    assert exactly_enough == []


def test_lint_healthcheck_timing_needs_interval_and_retries() -> None:
    assert lint(UpdateConfig(), has_healthcheck=True, healthcheck_interval=30 * S) == []
    assert lint(UpdateConfig(), has_healthcheck=True, healthcheck_retries=3) == []


def test_lint_warns_on_parallelism_zero_with_continue() -> None:
    cfg = UpdateConfig(parallelism=0, failure_action="continue")
    assert codes(lint(cfg, **HEALTHY)) == ["parallelism-0-continue"]
    assert lint(UpdateConfig(parallelism=0, failure_action="pause"), **HEALTHY) == []
    assert lint(UpdateConfig(parallelism=1, failure_action="continue"), **HEALTHY) == []


def test_lint_reports_every_trap_at_once_in_a_stable_order() -> None:
    cfg = UpdateConfig(parallelism=0, failure_action="continue", delay="1m", order="start-first")
    warnings = lint(
        cfg,
        has_healthcheck=False,
        host_mode_ports=True,
        healthcheck_interval=30 * S,
        healthcheck_retries=3,
    )
    assert codes(warnings) == [
        "delay-ge-monitor",
        "start-first-host-ports",
        "no-healthcheck",
        "parallelism-0-continue",
    ]
    for warning in warnings:
        assert warning.message.endswith(".")
        assert str(warning).startswith(f"{warning.code}: ")


def test_lint_accepts_a_rollback_config() -> None:
    assert codes(lint(RollbackConfig(delay="10s"), **HEALTHY)) == ["delay-ge-monitor"]


# -- from Kubernetes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("surge", "unavailable", "replicas", "order", "parallelism"),
    [
        (1, 0, None, Order.START_FIRST, 1),
        (3, "0", None, Order.START_FIRST, 3),
        ("0", 2, None, Order.STOP_FIRST, 2),
        ("25%", "0%", 10, Order.START_FIRST, 3),  # surge rounds up: 2.5 -> 3
        ("0%", "25%", 10, Order.STOP_FIRST, 2),  # unavailable rounds down: 2.5 -> 2
        ("1%", "0%", 3, Order.START_FIRST, 1),
        # both resolve to 0: Kubernetes sets unavailable to 1
        ("0%", "10%", 3, Order.STOP_FIRST, 1),
        ("200%", 0, 2, Order.START_FIRST, 4),  # surge may exceed 100%
    ],
)
def test_from_kubernetes_maps_one_sided_strategies_exactly(
    surge: int | str, unavailable: int | str, replicas: int | None, order: Order, parallelism: int
) -> None:
    config, warnings = UpdateConfig.from_kubernetes(surge, unavailable, replicas)
    assert (config.order, config.parallelism) == (order, parallelism)
    assert warnings == []


def test_from_kubernetes_with_surge_and_unavailable_starts_first_at_surge_and_warns() -> None:
    # Kubernetes' defaults, 25% each, on 4 replicas: 1 and 1
    mapped = UpdateConfig.from_kubernetes(replicas=4)
    assert mapped.config == UpdateConfig(parallelism=1, order="start-first")
    assert [w.code for w in mapped.warnings] == ["surge-and-unavailable"]
    assert isinstance(mapped.warnings[0], LintWarning)
    assert "max_unavailable to 0" in mapped.warnings[0].message


def test_from_kubernetes_keeps_the_other_settings() -> None:
    config, _ = UpdateConfig.from_kubernetes(2, 0, monitor="30s", failure_action="rollback")
    assert config == UpdateConfig(
        parallelism=2, order="start-first", monitor="30s", failure_action="rollback"
    )
    with pytest.raises(ConfigError, match="parallelism"):
        UpdateConfig.from_kubernetes(2, 0, parallelism=3)


@pytest.mark.parametrize(
    ("surge", "unavailable", "replicas", "field"),
    [
        (0, 0, None, "max_unavailable"),  # Kubernetes refuses both 0
        ("0%", "0", 5, "max_unavailable"),
        (-1, 0, None, "max_surge"),
        ("1.5", 0, None, "max_surge"),
        ("25 %", 0, 4, "max_surge"),
        ("25%", 0, None, "max_surge"),  # a percentage needs replicas
        (0, "101%", 4, "max_unavailable"),  # more than every task
        (True, 0, None, "max_surge"),
        (1, 0, -2, "replicas"),
    ],
)
def test_from_kubernetes_refuses_what_kubernetes_refuses(
    surge: Any, unavailable: Any, replicas: Any, field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        UpdateConfig.from_kubernetes(surge, unavailable, replicas)
    assert info.value.field == field
    assert isinstance(info.value, InputError)
