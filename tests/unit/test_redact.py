"""Secret values are masked wherever text leaves the process: CLI output,
logs and webhook bodies use the same function."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from zdd_swarm.cli import _Obj, cli
from zdd_swarm.redact import MASK, mask_secrets, mask_url, mask_values
from zdd_swarm.testing import FakeClock, FakeEngine, ImageBehaviour

SECRET = "s3cr3t-Value-42"


@pytest.mark.parametrize(
    "text",
    [
        f"DB_PASSWORD={SECRET}",
        f"env: API_TOKEN={SECRET} and more",
        f'{{"client_secret": "{SECRET}"}}',
        f"apikey: {SECRET}",
        f"PRIVATE_KEY='{SECRET}'",
        f"postgres://app:{SECRET}@db:5432/app",
        f"Authorization: Bearer {SECRET}",
        f"GITHUB_TOKEN={SECRET};next",
    ],
)
def test_secret_values_are_masked_and_their_keys_kept(text: str) -> None:
    masked = mask_secrets(text)
    assert SECRET not in masked
    assert MASK in masked


@pytest.mark.parametrize(
    "text",
    [
        "task: non-zero exit (1)",
        "AUTHOR=me",
        "image=registry:5000/web:2",
        "http://127.0.0.1:8080/health",
        "password authentication failed",
    ],
)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert mask_secrets(text) == text


def test_mask_values_masks_strings_and_secret_named_keys_in_nested_data() -> None:
    data = {"env": ["A=1", f"X_TOKEN={SECRET}"], "DB_PASSWORD": SECRET, "n": 3, "ok": None}
    assert mask_values(data) == {
        "env": ["A=1", f"X_TOKEN={MASK}"],
        "DB_PASSWORD": MASK,
        "n": 3,
        "ok": None,
    }


def test_mask_url_keeps_scheme_and_host_only() -> None:
    assert mask_url("https://hooks.slack.com/services/T0/B0/abc") == "https://hooks.slack.com/***"
    assert mask_url("http://127.0.0.1:9091") == "http://127.0.0.1:9091"
    assert mask_url(f"http://user:{SECRET}@host:1/x") == "http://host:1/***"


def test_cli_masks_a_secret_quoted_by_a_task_error_in_every_output() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock)
    engine.add_service("web", "app:1", replicas=2)
    engine.behave(
        "app:leaky",
        ImageBehaviour(fail_after=1.0, error=f"config invalid: DB_PASSWORD={SECRET} refused"),
    )
    runner = CliRunner()
    outputs = []
    for extra in (["--json", "-vv", "--log-format", "json"], ["-vv"]):
        result = runner.invoke(
            cli,
            ["update", "web", "--image", "app:leaky", *extra],
            obj=_Obj(engine_factory=lambda host: engine, clock=clock),
        )
        assert result.exit_code == 1, result.output
        outputs += [result.stdout, result.stderr]
        if "--json" in extra:
            assert json.loads(result.stdout)["outcome"] == "rolled_back"
    assert all(SECRET not in text for text in outputs)
    assert any("DB_PASSWORD=***" in text for text in outputs)


def test_every_name_in_all_exists() -> None:
    from zdd_swarm import metrics, notify, redact

    for module in (metrics, notify, redact):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
